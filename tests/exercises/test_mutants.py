"""Mutation catalogue: every known-wrong answer scores below full on its exercise (and, where the catalogue
knows the mistake, the failure names it); every alternative right answer scores full."""
import pytest
from exercise_runner import load, points, run, score
from mutants import RIGHT, WRONG

from course.grading.diagnoses import CATALOGUE
from course.grading.release import EXERCISES, SOURCE

NB = load(SOURCE)
CASES_WRONG = [(ex, key, code) for ex, cases in WRONG.items() for key, code in cases]
CASES_RIGHT = [(ex, code) for ex, cases in RIGHT.items() for code in cases]


def test_catalogue_covers_every_exercise():
    for ex in EXERCISES:
        assert len(WRONG[ex]) >= 3, f"{ex}: fewer than 3 known-wrong answers"
        assert len(RIGHT[ex]) >= 2, f"{ex}: fewer than 2 alternative right answers"


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
