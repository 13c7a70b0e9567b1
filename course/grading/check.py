"""`course check [notebook]`: run the visible tests of an exercise notebook in a fresh kernel and print, per
exercise, pass/fail, points and the likely mistake behind each failure.

Hidden-test blocks (present only in the instructor's source) are stripped first, so a learner's release and
the source are checked alike. The notebook's own last cell (`H.self_check()`) calls this command.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from course.grading.diagnoses import diagnosis_first
from course.grading.release import ALL_EXERCISES, ASSIGNMENT, CELL_TIMEOUT_S, NOTEBOOK, exercise_of

DEFAULT = Path("exercises") / ASSIGNMENT / NOTEBOOK
HIDDEN = re.compile(
    r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[^\n]*\n?", re.MULTILINE | re.DOTALL
)
SELF_CHECK = "self_check"
SKIP = "skip-check"  # a cell for the learner only: course check does not run it


@dataclass
class TestResult:
    grade_id: str
    points: float
    passed: bool
    message: str = ""

    @property
    def exercise(self) -> str:
        return exercise_of(self.grade_id)


def add_arguments(parser) -> None:
    parser.add_argument(
        "notebook", nargs="?", default=str(DEFAULT), help=f"the exercise notebook (default: {DEFAULT})"
    )
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT_S, help="seconds allowed per cell")


def run(args) -> int:
    path = Path(args.notebook)
    if not path.is_file():
        print(
            f"course check: no notebook at {path} (give its path: course check PATH.ipynb)", file=sys.stderr
        )
        return 2
    results = check_notebook(path, args.timeout)
    print(report(results))
    return 0 if results and all(r.passed for r in results) else 1


def visible_only(nb) -> None:
    """Strip hidden-test blocks, the self-check cell and the cells tagged SKIP (the capstone's demo and
    training cells) from a notebook (in place)."""
    nb.cells = [
        c
        for c in nb.cells
        if _meta(c).get("grade_id") != SELF_CHECK and SKIP not in c.get("metadata", {}).get("tags", ())
    ]
    for cell in nb.cells:
        if _meta(cell).get("grade"):
            cell.source = HIDDEN.sub("", cell.source)


def check_notebook(path: str | os.PathLike, timeout: int = CELL_TIMEOUT_S) -> list[TestResult]:
    """Execute the notebook's visible tests in a fresh kernel; one result per test cell."""
    import nbformat
    from nbclient import NotebookClient

    path = Path(path).resolve()
    nb = nbformat.read(path, as_version=4)
    visible_only(nb)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    # The kernel alone is told it runs inside a check (this process's environment stays as it was: a lab
    # server started later from it must not inherit COURSE_CHECK); its start-up chatter is not the learner's.
    client.execute(
        env={**os.environ, "COURSE_CHECK": "1", "PYTHONWARNINGS": "ignore"}, stderr=subprocess.DEVNULL
    )
    stubbed = stubbed_exercises(nb)
    return [
        _result(cell, stubbed) for cell in nb.cells if _meta(cell).get("grade") and cell.cell_type == "code"
    ]


def stubbed_exercises(nb) -> set[str]:
    """Exercises of an executed notebook whose answer cell still raises NotImplementedError."""
    return {
        exercise_of(_meta(c)["grade_id"])
        for c in nb.cells
        if _meta(c).get("solution")
        and any(o.get("ename") == "NotImplementedError" for o in c.get("outputs", []))
    }


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _result(cell, stubbed: set[str]) -> TestResult:
    """`stubbed`: exercises whose answer cell still raises NotImplementedError."""
    meta = _meta(cell)
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if not errors:
        return TestResult(meta["grade_id"], meta.get("points", 0), True)
    ename = errors[0]["ename"]
    if ename == "NameError" and exercise_of(meta["grade_id"]) in stubbed:
        ename = "NotImplementedError"
    return TestResult(meta["grade_id"], meta.get("points", 0), False, explain(ename, errors[0]["evalue"]))


def explain(ename: str, evalue: str) -> str:
    """A learner-facing sentence for a test cell's exception."""
    if ename == "NotImplementedError":
        return "not attempted yet: the answer cell still raises NotImplementedError"
    if ename == "NameError":
        return f"{evalue}: run the answer cell above this test (did it raise an error?)"
    if ename == "AssertionError":
        return diagnosis_first(evalue) if evalue else "a test assertion failed"
    return f"your code raised {ename}: {evalue}"


def report(results: list[TestResult]) -> str:
    """Totals first, then per exercise PASS / FAIL / not attempted with its points, and per test a ✓, or a ✗
    with the likely mistake first."""
    lines, earned, possible = [], 0.0, 0.0
    for ex in ALL_EXERCISES:
        mine = [r for r in results if r.exercise == ex]
        if not mine:
            continue
        got, total = sum(r.points for r in mine if r.passed), sum(r.points for r in mine)
        earned, possible = earned + got, possible + total
        untouched = all(not r.passed and r.message.startswith("not attempted") for r in mine)
        verdict = "not attempted" if untouched else "PASS" if got == total else "FAIL"
        lines.append(f"{ex}  {verdict}  {got:g}/{total:g} points")
        if not untouched:
            lines += [
                f"      ✓ {r.grade_id}" if r.passed else f"      ✗ {r.grade_id}: {r.message}" for r in mine
            ]
    head = f"visible tests: {earned:g}/{possible:g} points (grading adds hidden tests on other inputs)"
    return "\n".join([head, *lines])
