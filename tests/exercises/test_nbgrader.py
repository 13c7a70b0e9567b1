"""nbgrader itself on the exercise notebook: the committed release is what generation produces now, and the
solutions pass nbgrader's Validator even when every answer is noisy on stderr (warnings, prints, logging)."""
import re

import nbformat
import pytest
from exercise_runner import load, meta
from nbgrader.validator import Validator
from traitlets.config import Config

from course.grading.release import RELEASE, SOURCE, configure, generate

pytestmark = [pytest.mark.xdist_group("exercise-kernels"), pytest.mark.slow]

NOISE = ('import logging, sys, warnings\nprint("progress 50%", file=sys.stderr)\n'
         'warnings.warn("this is deprecated", UserWarning)\nlogging.warning("a log line")\n')


def normalized(nb) -> dict:
    return {"metadata": dict(nb.metadata), "nbformat": (nb.nbformat, nb.nbformat_minor),
            "cells": [(c.cell_type, c.id, c.source, c.metadata) for c in nb.cells]}


def test_committed_release_equals_what_generation_produces_now(tmp_path):
    fresh = load(generate(tmp_path / "exercises.ipynb"))
    assert normalized(fresh) == normalized(load(RELEASE)), (
        "exercises/ is stale: run `python -m course.grading.release` and commit the result")


def test_noisy_solutions_pass_nbgrader_validate(tmp_path):
    nb = load(SOURCE)
    for cell in nb.cells:
        if meta(cell).get("solution"):  # every answer makes noise whenever a test calls it
            cell.source = re.sub(r"^([ \t]*)### BEGIN SOLUTION\n",
                                 lambda m: m.group(0) + "".join(m.group(1) + line + "\n" for line in NOISE.splitlines()),
                                 cell.source, flags=re.MULTILINE)
            assert NOISE.splitlines()[1] in cell.source
    path = tmp_path / "exercises.ipynb"
    nbformat.write(nb, path)
    config = Config()
    configure(config, tmp_path)
    results = Validator(config=config).validate(str(path))
    assert "failed" not in results and "type_changed" not in results, results.get("failed")
