"""Mutation catalogue: every known-wrong answer scores below full on its exercise (and, where the catalogue
knows the mistake, the failure names it); every alternative right answer scores full; every right answer that
calls what its exercise asks the learner to write scores below full, and the failures name the call."""
import pytest
from exercise_runner import load, points, run, score
from mutants import LIBRARY, RIGHT, WRONG

from course.grading import grader
from course.grading.diagnoses import CATALOGUE
from course.grading.release import EXERCISES, SOURCE

NB = load(SOURCE)
CASES_WRONG = [(ex, key, code) for ex, cases in WRONG.items() for key, code in cases]
CASES_RIGHT = [(ex, code) for ex, cases in RIGHT.items() for code in cases]
# Known gaps of the advisory own-work check (it runs in the learner's process, on torch's public
# TorchFunctionMode): TorchScript runs out of its sight, and nn.Transformer's mask helper is plain Python.
# README ("What remains open") names both; the scores they get are those of a right answer.
KNOWN_GAPS = ("torch.jit.script", "generate_square_subsequent_mask")
CASES_LIBRARY = [(ex, named, code) for ex, cases in LIBRARY.items() for named, code in cases
                 if not any(gap in code for gap in KNOWN_GAPS)]


def test_catalogue_covers_every_exercise():
    for ex in EXERCISES:
        assert len(WRONG[ex]) >= 3, f"{ex}: fewer than 3 known-wrong answers"
        assert len(RIGHT[ex]) >= 2, f"{ex}: fewer than 2 alternative right answers"
    for ex in set(grader.FORBIDDEN) & set(EXERCISES):  # the capstone's: tests/exercises/capstone_mutants.py
        assert LIBRARY.get(ex), f"{ex}: no answer that calls the library"


@pytest.mark.parametrize(("exercise", "mistake", "code"), CASES_WRONG,
                         ids=[f"{ex}-{key or 'other'}-{i}" for i, (ex, key, _) in enumerate(CASES_WRONG)])
def test_wrong_answer_scores_below_full(exercise, mistake, code):
    results = run(NB, exercise, code)
    assert score(NB, results, exercise) < points(NB, exercise), f"a wrong answer got full marks: {code}"
    if mistake is not None:
        messages = [m for m in results.values() if m]
        assert any(CATALOGUE[mistake] in m for m in messages), (
            f"no failure names the mistake {mistake!r}; messages: {messages}")


@pytest.mark.parametrize(("exercise", "code"), CASES_RIGHT,
                         ids=[f"{ex}-{i}" for i, (ex, _) in enumerate(CASES_RIGHT)])
def test_alternative_right_answer_scores_full(exercise, code):
    results = run(NB, exercise, code)
    failures = {gid: m for gid, m in results.items() if m}
    assert score(NB, results, exercise) == points(NB, exercise), failures


@pytest.mark.parametrize(("exercise", "named", "code"), CASES_LIBRARY,
                         ids=[f"{ex}-{i}" for i, (ex, _, _) in enumerate(CASES_LIBRARY)])
def test_library_call_scores_below_full_and_is_named(exercise, named, code):
    """`course` is not importable in the jail; a forbidden torch function is named by the grader."""
    results = run(NB, exercise, code)
    failures = [m for m in results.values() if m]
    assert score(NB, results, exercise) < points(NB, exercise), f"a library call got full marks: {code}"
    if named.startswith("called torch"):
        function = named.rsplit(".", 1)[-1]
        assert any(function in m for m in failures), f"no failure names {function!r}: {failures}"
