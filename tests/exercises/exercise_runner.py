"""Grade the exercise notebook's answers through the real trusted grader (`course.grading.grader`): the answer
cells run in the jail, the test cells (visible and hidden) here. A mutant replaces the names it defines after the
exercise's answer cell ran, so an answer that fails to define them scores nothing."""
from __future__ import annotations

import ast
import copy
import re

import nbformat

from course.grading import grader, jail
from course.grading.release import exercise_of

MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)
LIMITS = jail.Limits(cell_s=30, exercise_s=30, wall_s=120)


def load(path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_cells(nb) -> list:
    return [c for c in nb.cells if meta(c).get("grade")]


def points(nb, exercise: str) -> float:
    return sum(meta(c)["points"] for c in grade_cells(nb) if exercise_of(meta(c)["grade_id"]) == exercise)


def _defined(code: str) -> list[str]:
    names = []
    for node in ast.parse(code).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.append(node.name)
        elif isinstance(node, ast.Assign):
            names += [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names += [a.asname or a.name.split(".")[0] for a in node.names]
    return names


def run(nb, exercise: str | None = None, mutant: str | None = None) -> dict[str, str | None]:
    """{grade_id: None when the test passed, else its message} for the tests of `exercise` (all when None)."""
    cells = []
    for number, cell in enumerate(nb.cells, 1):
        if meta(cell).get("solution"):
            cells.append((number, MARKERS.sub("", cell.source)))
            if mutant and meta(cell)["grade_id"] == f"{exercise}_solution":
                forget = "".join(f"del {name}\n" for name in _defined(mutant) if name in _defined(cells[-1][1]))
                cells.append((number, forget + mutant))
    outcome = grader.grade(cells, nb, LIMITS, exercises=None if exercise is None else {exercise})
    return {v.grade_id: (v.message or None) for v in outcome.verdicts}


VISIBLE = "_visible"  # suffix of a test cell's visible-only copy


def with_visible_copies(nb) -> nbformat.NotebookNode:
    """`nb` with, after each test cell, a copy of its visible part alone (grade_id + VISIBLE): one grading run
    then scores an answer on the visible tests and on all tests."""
    from course.grading.check import HIDDEN

    out = copy.deepcopy(nb)
    cells = []
    for cell in out.cells:
        cells.append(cell)
        if meta(cell).get("grade"):
            visible = copy.deepcopy(cell)
            visible.source = HIDDEN.sub("", cell.source)
            visible.id = visible.metadata["nbgrader"]["grade_id"] = cell.id + VISIBLE
            cells.append(visible)
    out.cells = cells
    return out


def score(nb, results: dict[str, str | None], exercise: str) -> float:
    return sum(meta(c)["points"] for c in grade_cells(nb)
               if exercise_of(meta(c)["grade_id"]) == exercise and results.get(meta(c)["grade_id"], "") is None)
