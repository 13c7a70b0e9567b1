"""Run the exercise notebook's cells in this process: the solution source, the release, or the source with a
mutant answer. Far faster than one nbgrader run per mutant; nbgrader itself is exercised in test_nbgrader.py."""
from __future__ import annotations

import linecache

import nbformat

from course.grading.release import exercise_of


def load(path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def grade_cells(nb) -> list:
    return [c for c in nb.cells if meta(c).get("grade")]


def points(nb, exercise: str) -> float:
    return sum(meta(c)["points"] for c in grade_cells(nb) if exercise_of(meta(c)["grade_id"]) == exercise)


def run(nb, exercise: str | None = None, mutant: str | None = None) -> dict[str, str | None]:
    """Execute every non-test cell in order in a fresh namespace (errors ignored, as a kernel would go on), the
    `mutant` code right after `exercise`'s answer cell, and the test cells (of `exercise` only, if given).
    Returns {grade_id: None when the test cell passed, else "ExceptionName: message"}."""
    ns: dict = {"__name__": "__main__"}
    results = {}
    for cell in nb.cells:
        m = meta(cell)
        gid = m.get("grade_id", "")
        if cell.cell_type != "code" or gid == "self_check":
            continue
        is_test = m.get("grade", False)
        if is_test and exercise is not None and exercise_of(gid) != exercise:
            continue
        sources = [cell.source] + ([mutant] if mutant and gid == f"{exercise}_solution" else [])
        for i, source in enumerate(sources):
            name = f"<cell {gid or 'code'} {i}>"
            linecache.cache[name] = (len(source), None, source.splitlines(True), name)  # as IPython keeps cells
            try:
                exec(compile(source, name, "exec"), ns)  # noqa: S102 - the notebook under test
                outcome = None
            except Exception as e:  # noqa: BLE001 - a failing cell is a result, as in a kernel
                outcome = f"{type(e).__name__}: {e}"
        if is_test:
            results[gid] = outcome
    return results


def score(nb, results: dict[str, str | None], exercise: str) -> float:
    return sum(meta(c)["points"] for c in grade_cells(nb)
               if exercise_of(meta(c)["grade_id"]) == exercise and results.get(meta(c)["grade_id"], "") is None)
