"""What the trusted side knows about the assignment (`Reference`, read from the generated release) and the
notebook as graded: locked cells restored from the release, forged grade_ids demoted, the learner's cells
listed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nbformat

from course.grading import release


@dataclass
class Reference:
    """What the trusted side knows about the assignment, from the generated release."""

    nb: nbformat.NotebookNode
    tests: dict[str, float]  # grade_id -> points (autograded test cells)
    locked: dict[str, dict]  # grade_id -> release cell, for every locked cell
    setup_id: str | None  # the first locked code cell (harness.setup)

    @property
    def max_score(self) -> float:
        return sum(self.tests.values())

    @property
    def exercises(self) -> tuple[str, ...]:
        """The exercises with tests, in release order ('ex01', 'ex02', …)."""
        return tuple(dict.fromkeys(release.exercise_of(g) for g in self.tests))

    def tests_of(self, exercise: str) -> list[str]:
        return [g for g in self.tests if release.exercise_of(g) == exercise]

    @classmethod
    def read(cls, path: Path) -> Reference:
        nb = nbformat.read(path, as_version=4)
        tests, locked, setup_id = {}, {}, None
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                tests[meta["grade_id"]] = float(meta.get("points", 0))
            if meta.get("locked"):
                locked[meta["grade_id"]] = cell
                if setup_id is None and cell.cell_type == "code" and not meta.get("grade"):
                    setup_id = meta["grade_id"]
        return cls(nb, tests, locked, setup_id)


def sanitize(nb: nbformat.NotebookNode, ref: Reference) -> nbformat.NotebookNode:
    """The notebook as graded: locked cells restored from the release (type, metadata, position if deleted),
    duplicate or unknown grade_ids demoted to plain cells. Each cell keeps its number in the submission."""
    seen, cells = set(), []
    for number, cell in enumerate(nb.cells, 1):
        cell.metadata["course_grading"] = {"cell": number}  # its number in the submission, for reasons
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid is not None and (gid in seen or gid not in _known_ids(ref)):
            cell.metadata.pop("nbgrader")
            gid = None
        if gid in ref.locked:
            cell = nbformat.from_dict(dict(ref.locked[gid]))
        elif gid is not None:
            cell.metadata["nbgrader"] = _release_meta(ref, gid)
        seen.add(gid)
        cells.append(cell)
    nb.cells = _restore_missing(cells, ref)
    nb.metadata["kernelspec"] = ref.nb.metadata["kernelspec"]
    return nb


def learner_cells(nb: nbformat.NotebookNode, ref: Reference) -> list[tuple[int, str]]:
    """(number in the submission, source) of every code cell the learner could edit, in order."""
    return [
        (c.metadata.get("course_grading", {}).get("cell", 0), c.source)
        for c in nb.cells
        if c.cell_type == "code" and gid_of(c) not in ref.locked
    ]


def gid_of(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _known_ids(ref: Reference) -> set[str]:
    return {
        c.metadata["nbgrader"]["grade_id"]
        for c in ref.nb.cells
        if "grade_id" in c.metadata.get("nbgrader", {})
    }


def _release_meta(ref: Reference, gid: str) -> dict:
    return next(
        dict(c.metadata["nbgrader"])
        for c in ref.nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == gid
    )


def _restore_missing(cells: list, ref: Reference) -> list:
    present = {gid_of(c) for c in cells}
    for i, rcell in enumerate(ref.nb.cells):
        gid = gid_of(rcell)
        if gid in ref.locked and gid not in present:
            before = [gid_of(c) for c in ref.nb.cells[:i] if gid_of(c) in present]
            at = max((j + 1 for j, c in enumerate(cells) if before and gid_of(c) == before[-1]), default=0)
            cells.insert(at, nbformat.from_dict(dict(rcell)))
            present.add(gid)
    return cells
