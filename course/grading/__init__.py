"""Grading of the ten practice exercises: the notebook harness, the diagnosis catalogue, the planted-bug models
of exercise 10, the release generator, `course check` (this package) and `course grade` (pipeline, sandbox)."""
