"""nbgrader's Validate with the course's feedback (`course.grading.validate`): totals and per-exercise lines
first, a one-line diagnosis per failing test, the traceback only for an error the learner's code raised."""

import nbformat
import pytest
from exercise_runner import load
from mutants import WRONG
from traitlets.config import Config

from course.grading.check import visible_only
from course.grading.diagnoses import CATALOGUE
from course.grading.release import EXERCISES, RELEASE, SOURCE, configure
from course.grading.validate import CourseValidator, install

pytestmark = pytest.mark.xdist_group("exercise-kernels")


def validate(path) -> list[dict]:
    c = Config()
    configure(c, str(path.parent))
    return CourseValidator(config=c).validate(str(path))["failed"]


@pytest.mark.slow
def test_untouched_release_gets_totals_first_and_no_tracebacks(tmp_path):
    path = tmp_path / "exercises.ipynb"
    path.write_text(RELEASE.read_text())
    failed = validate(path)
    first = failed[0]["raw_error"].splitlines()
    assert first[0].startswith("visible tests: 0/") and first[0].split()[2].startswith("0/")
    assert [line.split()[0] for line in first[1 : 1 + len(EXERCISES)]] == list(EXERCISES)
    assert all("not attempted" in line for line in first[1 : 1 + len(EXERCISES)])
    assert all("not attempted yet" in f["raw_error"] and "Traceback" not in f["raw_error"] for f in failed)
    assert sum(len(f["raw_error"]) for f in failed) < 5_000  # nbgrader's own text: ~48,000 characters


@pytest.mark.slow
def test_a_wrong_answer_gets_its_diagnosis_and_own_errors_keep_their_traceback(tmp_path):
    nb = load(SOURCE)
    visible_only(nb)
    for cell in nb.cells:
        if cell.id == "ex01_solution":
            cell.source += "\n" + next(code for k, code in WRONG["ex01"] if k == "softmax_axis")
        if cell.id == "ex02_solution":
            cell.source += "\ndef causal_mask(T):\n    raise RuntimeError('boom in my mask')\n"
    path = tmp_path / "exercises.ipynb"
    nbformat.write(nb, path)
    failed = validate(path)
    lines = failed[0]["raw_error"].splitlines()
    assert lines[0].startswith("visible tests: ")
    verdicts = {line.split()[0]: line for line in lines if line.startswith("ex") and "points" in line}
    assert set(verdicts) == set(EXERCISES)
    assert "FAIL  0/" in verdicts["ex01"] and "FAIL" in verdicts["ex02"]
    assert all("PASS" in verdicts[ex] for ex in EXERCISES if ex not in ("ex01", "ex02"))
    this = [f["raw_error"].split("This cell:\n")[-1] for f in failed]  # each box's own part
    ex01 = [t for t in this if t.startswith("✗ ex01")]
    assert ex01 and all(CATALOGUE["softmax_axis"] in t and "Traceback" not in t for t in ex01)
    own = [t for t in this if t.startswith("✗ ex02") and "raised RuntimeError" in t]
    assert own and all("boom in my mask" in t and "Traceback" in t for t in own)


def test_install_replaces_the_lab_validate_handlers_validator():
    from nbgrader.server_extensions.validate_assignment import handlers

    install()
    assert handlers.Validator is CourseValidator
