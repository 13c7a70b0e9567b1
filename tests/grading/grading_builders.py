"""Synthetic submissions built from the generated release and the solution source (never hand-written
copies)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import nbformat

MARKERS = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$\n?", re.MULTILINE)


def solutions_by_id(source: Path) -> dict[str, str]:
    """grade_id -> solution code (markers removed) of every solution cell of the source notebook."""
    nb = nbformat.read(source, as_version=4)
    return {
        c.metadata["nbgrader"]["grade_id"]: MARKERS.sub("", c.source)
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }


def hidden_lines(source: Path) -> set[str]:
    """Every non-blank line (indentation kept) inside a hidden-test block of the source notebook."""
    lines, inside = set(), False
    for cell in nbformat.read(source, as_version=4).cells:
        for line in cell.source.splitlines():
            if "BEGIN HIDDEN TESTS" in line:
                inside = True
            elif "END HIDDEN TESTS" in line:
                inside = False
            elif inside and line.strip():
                lines.add(line.rstrip())
    return lines


def gid(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


class Builder:
    """Make notebooks from the release: `answer(ids)` fills solution cells, then edit freely."""

    def __init__(self, release: Path, source: Path):
        self.release = nbformat.read(release, as_version=4)
        self.solutions = solutions_by_id(source)

    def notebook(self, answered=(), code: dict[str, str] | None = None) -> nbformat.NotebookNode:
        """Release with the solution cells in `answered` (exercise prefixes or grade_ids; "all") solved, and
        the cells in `code` (grade_id -> source) replaced."""
        nb = copy.deepcopy(self.release)
        for cell in nb.cells:
            g = gid(cell)
            if g in self.solutions and (answered == "all" or g in answered or g.split("_")[0] in answered):
                cell.source = self.solutions[g]
            if code and g in code:
                cell.source = code[g]
        return nb

    def index(self, nb, grade_id: str) -> int:
        return next(i for i, c in enumerate(nb.cells) if gid(c) == grade_id)

    def after(self, nb, grade_id: str, source: str) -> nbformat.NotebookNode:
        """Insert a learner code cell right after the cell `grade_id`."""
        nb.cells.insert(self.index(nb, grade_id) + 1, nbformat.v4.new_code_cell(source))
        return nb


def write(
    folder: Path,
    sid: str,
    nb=None,
    *,
    raw: bytes | str | None = None,
    name: str = "exercises.ipynb",
    timestamp: str | None = None,
) -> Path:
    d = folder / sid
    d.mkdir(parents=True, exist_ok=True)
    if nb is not None:
        nbformat.write(nb, d / name)
    elif raw is not None:
        (d / name).write_bytes(raw.encode() if isinstance(raw, str) else raw)
    if timestamp:
        (d / "timestamp.txt").write_text(timestamp)
    return d
