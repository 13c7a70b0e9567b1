"""The capstone assignment (exercises 11-14, the learner's own GPT): structure of the source and the committed
release, solutions full marks and stubs zero through the real jail, the mutation catalogue, and the source
notebook executing top to bottom (the training cell for a few steps)."""

import os
import re

import nbformat
import pytest
from capstone_mutants import LIBRARY, RIGHT, WRONG
from exercise_runner import grade_cells, load, meta, run
from nbgrader.nbgraderformat import MetadataValidator

from course.grading.check import HIDDEN
from course.grading.diagnoses import CATALOGUE
from course.grading.release import ASSIGNMENTS, exercise_of, generate, paths

SOURCE, RELEASE = paths("capstone")
EXERCISES = ASSIGNMENTS["capstone"][1]
SRC, REL = load(SOURCE), load(RELEASE)
SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION.*?\n(.*?)^[ \t]*### END SOLUTION", re.MULTILINE | re.DOTALL)
HIDDEN_BODY = re.compile(
    r"^[ \t]*### BEGIN HIDDEN TESTS.*?\n(.*?)^[ \t]*### END HIDDEN TESTS", re.MULTILINE | re.DOTALL
)
NEVER_GRADED = ("text_match", "train")  # cells that use `course`: locked, so the grader never runs them


def points(exercise: str) -> float:
    return sum(meta(c)["points"] for c in grade_cells(SRC) if exercise_of(meta(c)["grade_id"]) == exercise)


def score(results: dict, exercise: str) -> float:
    return sum(
        meta(c)["points"]
        for c in grade_cells(SRC)
        if exercise_of(meta(c)["grade_id"]) == exercise and results.get(meta(c)["grade_id"], "") is None
    )


@pytest.mark.parametrize("nb", [SRC, REL], ids=["source", "release"])
def test_metadata_tests_and_locked_cells(nb):
    MetadataValidator().validate_nb(nb)
    ids = [meta(c)["grade_id"] for c in nb.cells if meta(c)]
    assert len(ids) == len(set(ids)), "duplicate grade_id"
    tests = grade_cells(nb)
    assert {exercise_of(meta(c)["grade_id"]) for c in tests} == set(EXERCISES)
    for cell in tests:
        m = meta(cell)
        assert m["locked"] and not m["solution"] and m["points"] > 0 and cell.id == m["grade_id"], m[
            "grade_id"
        ]
    for cell_id in NEVER_GRADED:
        cell = next(c for c in nb.cells if c.id == cell_id)
        assert meta(cell)["locked"] and not meta(cell)["grade"] and not meta(cell)["solution"], cell_id
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.id


def test_release_is_the_source_without_solutions_or_hidden_tests():
    assert [c.id for c in REL.cells] == [c.id for c in SRC.cells]
    text = "\n".join(c.source for c in REL.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    released = {line.rstrip() for c in REL.cells for line in c.source.splitlines()}
    solutions = {
        line.rstrip()
        for c in SRC.cells
        if meta(c).get("solution")
        for b in SOLUTION.findall(c.source)
        for line in b.splitlines()
        if line.strip()
    }
    hidden = {
        line.rstrip()
        for c in grade_cells(SRC)
        for b in HIDDEN_BODY.findall(c.source)
        for line in b.splitlines()
        if line.strip()
    }
    assert not (solutions | hidden) & released, sorted((solutions | hidden) & released)[:5]
    for cell in grade_cells(SRC):
        assert len(HIDDEN_BODY.findall(cell.source)) == 1 and HIDDEN.sub("", cell.source).strip(), cell.id


def test_each_exercise_states_difficulty_budget_and_hints():
    for ex in EXERCISES:
        recap = next(c for c in SRC.cells if c.id == f"{ex}_recap").source
        assert "**Recap.**" in recap and "**Worked example.**" in recap and "Budget:" in recap, ex
        assert re.search(r"difficulty [123]/3", recap), ex
        assert 1 <= next(c for c in SRC.cells if c.id == f"{ex}_hints").source.count("<details>") <= 3, ex


@pytest.mark.slow
@pytest.mark.xdist_group("exercise-kernels")
def test_committed_release_equals_what_generation_produces_now(tmp_path):
    fresh = load(generate(tmp_path / "capstone.ipynb", assignment="capstone"))
    assert [(c.id, c.source, c.metadata) for c in fresh.cells] == [
        (c.id, c.source, c.metadata) for c in REL.cells
    ], "exercises/capstone is stale: run `python -m course.grading.release` and commit the result"


def test_source_solutions_pass_every_test():
    results = run(SRC)
    assert len(results) == len(grade_cells(SRC))
    assert {gid: m for gid, m in results.items() if m} == {}


def test_released_stubs_score_zero():
    stubs = {meta(c)["grade_id"]: c.source for c in REL.cells if meta(c).get("solution")}
    src = load(SOURCE)
    for cell in src.cells:
        if meta(cell).get("solution"):
            cell.source = stubs[meta(cell)["grade_id"]]
    results = run(src)
    assert [gid for gid, m in results.items() if m is None] == []
    assert all("NotImplementedError" in m or "not defined" in m for m in results.values()), results


CASES_WRONG = [(ex, key, code) for ex, cases in WRONG.items() for key, code in cases]
CASES_RIGHT = [(ex, code) for ex, cases in RIGHT.items() for code in cases]
CASES_LIBRARY = [(ex, code) for ex, cases in LIBRARY.items() for _, code in cases]


def test_catalogue_covers_every_exercise():
    for ex in EXERCISES:
        assert len(WRONG[ex]) >= 3 and len(RIGHT[ex]) >= 2, ex


@pytest.mark.parametrize(
    ("exercise", "mistake", "code"),
    CASES_WRONG,
    ids=[f"{ex}-{key or 'other'}-{i}" for i, (ex, key, _) in enumerate(CASES_WRONG)],
)
def test_wrong_answer_scores_below_full(exercise, mistake, code):
    results = run(SRC, exercise, code)
    assert score(results, exercise) < points(exercise), f"a wrong answer got full marks: {code}"
    if mistake is not None:
        messages = [m for m in results.values() if m]
        assert any(CATALOGUE[mistake] in m for m in messages), f"{mistake!r} not named; messages: {messages}"


@pytest.mark.parametrize(
    ("exercise", "code"), CASES_RIGHT, ids=[f"{ex}-{i}" for i, (ex, _) in enumerate(CASES_RIGHT)]
)
def test_alternative_right_answer_scores_full(exercise, code):
    results = run(SRC, exercise, code)
    assert score(results, exercise) == points(exercise), {gid: m for gid, m in results.items() if m}


@pytest.mark.parametrize(("exercise", "code"), CASES_LIBRARY, ids=[ex for ex, _ in CASES_LIBRARY])
def test_attention_from_torch_scores_below_full_and_is_named(exercise, code):
    results = run(SRC, exercise, code)
    failures = [m for m in results.values() if m]
    assert score(results, exercise) < points(exercise)
    assert any("scaled_dot_product_attention" in m for m in failures), failures


@pytest.mark.xdist_group("exercise-kernels")
def test_source_notebook_executes_with_a_short_training_run():
    """Visible tests, the text model in the learner's GPT (logits and greedy text match DecoderLM), and the
    training cell for 3 steps (COURSE_CAPSTONE_STEPS), all in a real kernel."""
    from nbclient import NotebookClient

    nb = nbformat.read(SOURCE, as_version=4)
    nb.cells = [c for c in nb.cells if c.id != "self_check"]
    env = {
        **os.environ,
        "COURSE_CAPSTONE_STEPS": "3",
        "COURSE_THREADS": "1",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(SOURCE.parent)}}
    ).execute(env=env)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "your greedy continuation:" in text and "loss:" in text, text[-2000:]


def test_course_check_skips_the_cells_tagged_for_the_learner_only():
    from course.grading.check import SKIP, visible_only

    nb = load(SOURCE)
    visible_only(nb)
    assert not {c.id for c in nb.cells} & set(NEVER_GRADED)
    assert all(SKIP in next(c for c in SRC.cells if c.id == i).metadata["tags"] for i in NEVER_GRADED)
