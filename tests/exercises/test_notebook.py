"""The exercise notebook itself: structure and metadata of the source and the committed release, a release free
of solutions and hidden tests, no scoring expressions, solutions score full and stubs score 0 (in process)."""
import ast
import re

import pytest
from exercise_runner import grade_cells, load, meta, run
from nbgrader.nbgraderformat import MetadataValidator

from course.grading.check import HIDDEN
from course.grading.release import EXERCISES, RELEASE, SOURCE, exercise_of

SRC, REL = load(SOURCE), load(RELEASE)
SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION.*?\n(.*?)^[ \t]*### END SOLUTION", re.MULTILINE | re.DOTALL)
HIDDEN_BODY = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?\n(.*?)^[ \t]*### END HIDDEN TESTS",
                         re.MULTILINE | re.DOTALL)


def _lines(blocks) -> set[str]:
    return {line.rstrip() for block in blocks for line in block.splitlines() if line.strip()}


def _release_lines() -> set[str]:
    return {line.rstrip() for cell in REL.cells for line in cell.source.splitlines()}


@pytest.mark.parametrize("nb", [SRC, REL], ids=["source", "release"])
def test_metadata_is_valid_nbgrader_and_clean(nb):
    MetadataValidator().validate_nb(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "widgets" not in nb.metadata
    ids = [meta(c)["grade_id"] for c in nb.cells if meta(c)]
    assert len(ids) == len(set(ids)), "duplicate grade_id"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"outputs committed in {cell.id}"


@pytest.mark.parametrize("nb", [SRC, REL], ids=["source", "release"])
def test_every_test_cell_is_locked_with_points_and_a_stable_grade_id(nb):
    tests = grade_cells(nb)
    assert {exercise_of(meta(c)["grade_id"]) for c in tests} == set(EXERCISES)
    for cell in tests:
        m = meta(cell)
        assert cell.cell_type == "code" and m["locked"] and not m["solution"], m["grade_id"]
        assert m["points"] > 0, m["grade_id"]
        assert re.fullmatch(r"ex\d\d_[a-z_]+", m["grade_id"]) and cell.id == m["grade_id"]
    if nb is REL:
        assert all(c.metadata["editable"] is False and c.metadata["deletable"] is False for c in tests)


def test_release_and_source_share_cells_and_grade_ids():
    assert [c.id for c in REL.cells] == [c.id for c in SRC.cells]
    assert [meta(c) .get("points") for c in REL.cells] == [meta(c).get("points") for c in SRC.cells]


def test_each_exercise_has_recap_worked_example_hints_and_a_documented_stub():
    for ex in EXERCISES:
        recap = next(c for c in SRC.cells if c.id == f"{ex}_recap")
        assert "**Recap.**" in recap.source and "**Worked example.**" in recap.source, ex
        hints = next(c for c in SRC.cells if c.id == f"{ex}_hints")
        assert 1 <= hints.source.count("<details>") == hints.source.count("</details>") <= 3, ex
        stub = next(c for c in REL.cells if c.id == f"{ex}_solution")
        assert meta(stub)["solution"] and not meta(stub)["locked"]
        defs = [n for n in ast.parse(stub.source).body if isinstance(n, ast.FunctionDef)]
        assert defs, ex
        assert all(ast.get_docstring(fn) for fn in defs), ex
        for needed in ("Difficulty", "Expected time", "raise NotImplementedError()"):
            assert needed in stub.source, (ex, needed)


def test_release_has_no_solution_code_and_no_hidden_test_line():
    text = "\n".join(c.source for c in REL.cells)
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text
    released = _release_lines()
    solutions = _lines(b for c in SRC.cells if meta(c).get("solution") for b in SOLUTION.findall(c.source))
    hidden = _lines(b for c in grade_cells(SRC) for b in HIDDEN_BODY.findall(c.source))
    assert solutions and hidden
    assert not solutions & released, f"solution lines in the release: {sorted(solutions & released)}"
    assert not hidden & released, f"hidden-test lines in the release: {sorted(hidden & released)}"


def test_every_test_cell_has_hidden_tests_and_a_visible_test():
    for cell in grade_cells(SRC):
        assert len(HIDDEN_BODY.findall(cell.source)) == 1, cell.id
        assert HIDDEN.sub("", cell.source).strip(), f"{cell.id} has no visible test"


def test_hidden_tests_never_wrap_answers_in_process_guards():
    """Hidden tests run in the trusted grader: no `H.own_work` (the jail watches forbidden calls itself)."""
    for cell in grade_cells(SRC):
        assert "own_work" not in cell.source, cell.id


def _ends_in_statement(source: str) -> bool:
    last = ast.parse(source).body[-1]
    if not isinstance(last, ast.Expr):
        return True
    call = last.value
    return (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and isinstance(call.func.value, ast.Name) and call.func.value.id == "H"
            and call.func.attr.startswith("expect_"))  # the harness's expect_* return None


@pytest.mark.parametrize("nb", [SRC, REL], ids=["source", "release"])
def test_no_test_cell_ends_in_a_bare_expression(nb):
    """nbgrader reads a test cell's last value as its score (False or a tensor -> full credit)."""
    for cell in grade_cells(nb):
        for source in (cell.source, HIDDEN.sub("", cell.source)):
            assert _ends_in_statement(source), f"{cell.id} ends in a bare expression"


def test_lint_catches_a_scoring_expression():
    assert not _ends_in_statement("x = 1\ntorch.allclose(a, b)")
    assert _ends_in_statement("H.expect_close(a, b, 'x')") and _ends_in_statement("for i in r:\n    f(i)")


def test_source_solutions_pass_every_test():
    results = run(SRC)
    assert len(results) == len(grade_cells(SRC))
    assert {gid: m for gid, m in results.items() if m} == {}


def test_released_stubs_score_zero():
    """The release's stubs, graded against the source's tests: nothing passes, every failure says why."""
    stub = load(RELEASE)
    cells = [c for c in stub.cells if meta(c).get("solution")]
    src = load(SOURCE)
    for cell in src.cells:  # the source's tests, the release's answer cells
        if meta(cell).get("solution"):
            cell.source = next(c.source for c in cells if meta(c)["grade_id"] == meta(cell)["grade_id"])
    results = run(src)
    assert len(results) == len(grade_cells(SRC))
    assert [gid for gid, m in results.items() if m is None] == []
    assert all("not defined" in m or "NotImplementedError" in m for m in results.values()), results


def test_repository_nbgrader_config_maps_source_and_release():
    from traitlets.config.loader import PyFileConfigLoader

    from course.grading.release import ROOT

    c = PyFileConfigLoader("nbgrader_config.py", path=str(ROOT / "graders")).load_config()
    assert c.CourseDirectory.root == str(ROOT)
    assert (ROOT / c.CourseDirectory.source_directory / "transformers" / "exercises.ipynb") == SOURCE
    assert (ROOT / c.CourseDirectory.release_directory / "transformers" / "exercises.ipynb") == RELEASE
    assert c.Execute.timeout >= 60 and c.OverwriteCells.add_missing_cells and c.IgnorePattern.enabled
