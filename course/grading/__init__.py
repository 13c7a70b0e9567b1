"""Grading of the practice exercises: the notebook harness, the diagnosis catalogue, the planted-bug models of
exercise 10, the release generator, `course check`, and `course grade` — the pipeline around nbgrader (`cli`,
one module per step: `course_dir`, `collect`, `sanitize`, `job`, `report`), the trusted comparison (`grader`,
`session`), the channel (`wire`) and the jail (`jail`, `runner`)."""
