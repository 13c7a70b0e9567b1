"""`course check`: visible tests only, in a fresh kernel, per-exercise points and the diagnosis of failures."""
import os

import nbformat
import pytest
from exercise_runner import grade_cells, load, meta
from mutants import MASKS_USED_WRONG, WRONG

from course.cli import main
from course.grading.check import _result, explain, report, visible_only
from course.grading.diagnoses import CATALOGUE
from course.grading.release import EXERCISES, SOURCE

pytestmark = pytest.mark.xdist_group("exercise-kernels")


def _mutant(exercise: str, key: str) -> str:
    return next(code for k, code in WRONG[exercise] if k == key)


def test_visible_only_strips_hidden_blocks_and_the_self_check():
    nb = load(SOURCE)
    visible_only(nb)
    assert all("HIDDEN TESTS" not in c.source for c in nb.cells)
    assert all(meta(c).get("grade_id") != "self_check" for c in nb.cells)
    assert len(grade_cells(nb)) == len(grade_cells(load(SOURCE)))


def test_explain_turns_exceptions_into_advice():
    assert "not attempted" in explain("NotImplementedError", "")
    assert "run the answer cell" in explain("NameError", "name 'attention' is not defined")
    assert explain("AssertionError", "weights: differs. Likely mistake: x") == "Likely mistake: x (weights: differs)"
    assert explain("RuntimeError", "shape") == "your code raised RuntimeError: shape"


@pytest.mark.slow
def test_check_reports_points_and_diagnoses(tmp_path, capsys):
    """ex01 answered with the softmax over the wrong axis fails with that diagnosis; a wrong MASKS_USED only shows
    in the hidden tests (a visible test would print the answer), so the visible check passes ex09; every other
    exercise passes."""
    nb = load(SOURCE)
    for cell in nb.cells:
        if cell.id == "ex01_solution":
            cell.source += "\n" + _mutant("ex01", "softmax_axis")
        if cell.id == "ex09_solution":
            cell.source += "\n" + MASKS_USED_WRONG
    path = tmp_path / "exercises.ipynb"
    nbformat.write(nb, path)
    assert main(["check", str(path)]) == 1
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("ex") and "points" in line}
    assert set(lines) == set(EXERCISES)
    assert "FAIL  0/4 points" in lines["ex01"] and CATALOGUE["softmax_axis"] in out
    assert all("PASS" in lines[ex] for ex in EXERCISES if ex != "ex01")


def test_a_stubbed_exercise_reads_as_not_attempted():
    """A test cell failing with NameError because its answer cell still raises counts as not attempted."""
    test_cell = nbformat.v4.new_code_cell("H.expect_value(MASKS_USED, {}, 'x')", metadata={"nbgrader": {
        "grade": True, "grade_id": "ex09_which", "points": 1}})
    test_cell.outputs = [nbformat.v4.new_output("error", ename="NameError", evalue="name 'MASKS_USED' is not "
                                                "defined", traceback=[])]
    assert "not attempted" in _result(test_cell, {"ex09"}).message
    assert "run the answer cell" in _result(test_cell, set()).message
    assert report([_result(test_cell, {"ex09"})]).splitlines()[1] == "ex09  not attempted  0/1 points"
    assert report([_result(test_cell, set())]).splitlines()[1] == "ex09  FAIL  0/1 points"


def test_report_puts_totals_first_and_marks_each_test():
    from course.grading.check import TestResult
    text = report([TestResult("ex01_weights", 2, True), TestResult("ex01_output", 2, False, "Likely mistake: m (o)")])
    lines = text.splitlines()
    assert lines[0].startswith("visible tests: 2/4 points")
    assert lines[1:] == ["ex01  FAIL  2/4 points", "      ✓ ex01_weights", "      ✗ ex01_output: Likely mistake: m (o)"]


def test_check_without_a_notebook_says_so(tmp_path, capsys):
    assert main(["check", str(tmp_path / "missing.ipynb")]) == 2
    assert "no notebook at" in capsys.readouterr().err


def test_the_check_marks_its_kernel_not_the_calling_process(tmp_path, monkeypatch):
    """The checked kernel sees COURSE_CHECK (so a self-check cell inside it does not start a second check);
    the calling process does not keep it: a lab server started from it later would pass it to every kernel,
    and every self-check cell there would silently do nothing."""
    monkeypatch.delenv("COURSE_CHECK", raising=False)
    cell = nbformat.v4.new_code_cell(
        "import os\nassert os.environ.get('COURSE_CHECK') == '1', 'kernel not marked'",
        metadata={"nbgrader": {"grade": True, "grade_id": "ex01_probe", "points": 1}},
    )
    nb = nbformat.v4.new_notebook(cells=[cell])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "probe.ipynb"
    nbformat.write(nb, path)
    from course.grading.check import check_notebook

    (result,) = check_notebook(path)
    assert result.passed, result
    assert "COURSE_CHECK" not in os.environ
