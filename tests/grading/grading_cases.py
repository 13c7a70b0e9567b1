"""The batch: 30 submissions (the issue-3 five, right and wrong answers, the hostile corpus, a rostered student
who submitted nothing), each with its expected status, score and reason, all built from the release and the
solution source. Scores are expressed through the release's points, never typed in."""
from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nbformat
from grading_builders import Builder, gid, write

DUE = "2026-03-01T12:00:00+00:00"
LATE = "2026-03-02 15:30:00.000000 UTC"
EARLY = "2026-02-28 09:00:00.000000 UTC"


@dataclass
class Case:
    sid: str
    make: Callable[[Builder, Path, str], None]   # (builder, submissions folder, student id): writes the folder
    status: str
    score: Callable[[Points], float | None]
    reason: str = ""                        # a substring of the reason ("" : reason must be empty)


class Points:
    """Points of the release's test cells, by exercise and by position."""

    def __init__(self, release: nbformat.NotebookNode):
        self.order = [(gid(c), float(c.metadata["nbgrader"]["points"])) for c in release.cells
                      if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")]
        self.max = sum(p for _, p in self.order)

    def of(self, *exercises: str) -> float:
        return sum(p for g, p in self.order if g.split("_")[0] in exercises)

    def before(self, grade_id: str) -> float:
        """Points of the tests strictly before test `grade_id`."""
        names = [g for g, _ in self.order]
        return sum(p for _, p in self.order[:names.index(grade_id)])

    def test_ids(self, exercise: str) -> list[str]:
        return [g for g, _ in self.order if g.startswith(exercise + "_")]

    @property
    def last(self) -> str:
        return self.order[-1][0]


HALF = ("ex01", "ex02", "ex03", "ex04", "ex05")
ALL = tuple(f"ex{i:02d}" for i in range(1, 11))


def _answer_except(*skip: str) -> tuple[str, ...]:
    return tuple(e for e in ALL if e not in skip)


def at_end(source: str):
    """Perfect answers plus a learner cell after the last test cell."""
    def make(b: Builder, folder: Path, sid: str) -> None:
        nb = b.notebook("all")
        write(folder, sid, b.after(nb, LAST_TEST[0], source))
    return make


LAST_TEST = [""]  # filled in by `cases()` from the release


def _edited(b, folder, sid):
    nb = b.notebook(HALF)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.source = "pass  # my tests"
    write(folder, sid, nb)


def _deleted(b, folder, sid):
    nb = b.notebook(_answer_except("ex02"))
    nb.cells.pop(b.index(nb, "ex02_mask"))
    write(folder, sid, nb)


def _stderr_noise(b, folder, sid):
    name = next(n.name for n in ast.parse(b.solutions["ex01_solution"]).body if isinstance(n, ast.FunctionDef))
    noisy = (f"\nimport logging, sys, warnings\n_plain = {name}\n\ndef {name}(*args, **kwargs):\n"
             "    print('50%|#####     | 5/10', file=sys.stderr)\n    warnings.warn('a learner warning')\n"
             "    logging.getLogger('learner').error('log noise')\n    return _plain(*args, **kwargs)\n")
    write(folder, sid, b.notebook("all", code={"ex01_solution": b.solutions["ex01_solution"] + noisy}))


def _retyped(b, folder, sid):
    nb = b.notebook(_answer_except("ex04"))
    for cell in nb.cells:
        if gid(cell) and gid(cell).startswith("ex04_") and cell.metadata["nbgrader"].get("grade"):
            cell.cell_type, cell.source = "markdown", "my notes instead of the tests"
            cell.pop("outputs", None), cell.pop("execution_count", None)
    write(folder, sid, nb)


def _duplicate(grade_id: str, timestamp: str | None = None):
    def make(b, folder, sid):
        nb = b.notebook("all")
        i = b.index(nb, grade_id)
        nb.cells.insert(i + 1, copy.deepcopy(nb.cells[i]))
        write(folder, sid, nb, timestamp=timestamp)
    return make


def _renamed(b, folder, sid):
    write(folder, sid, b.notebook("all"), name="exercises-final.ipynb")


def _no_notebook(b, folder, sid):
    (folder / sid).mkdir()
    (folder / sid / "notes.txt").write_text("I could not find the notebook")


def _corrupt(b, folder, sid):
    write(folder, sid, raw='{"cells": [{"cell_type": "code", "source": "x = 1"')


def _empty(b, folder, sid):
    (folder / sid).mkdir()


def _oversized_notebook(b, folder, sid):
    nb = b.notebook("all")
    nb.cells.append(nbformat.v4.new_markdown_cell("x" * (6 << 20)))  # over the 5 MB limit used by the tests
    write(folder, sid, nb)


def _oversized_extra(b, folder, sid):
    d = write(folder, sid, b.notebook("all"))
    with open(d / "weights.bin", "wb") as f:
        f.truncate(30 << 20)


def _at_top(source: str, answered):
    def make(b, folder, sid):
        nb = b.notebook(answered)
        write(folder, sid, b.after(nb, "setup", source))
    return make


def _runtime_tamper(b, folder, sid):
    nb = b.notebook("all")  # rebinding through a container: invisible to the static scan, caught by the probes
    write(folder, sid, b.after(nb, "ex09_which", "_m = [torch]\n_m[0].allclose = lambda *a, **k: True"))


def _late(b, folder, sid):
    write(folder, sid, b.notebook("all"), timestamp=LATE)


def _bad_id(b, folder, sid):
    write(folder, sid, b.notebook("all"))


READ_SECRETS = """
import glob
for path in ['../../../gradebook.db', '../../../../secret/gradebook.db', '{solutions}', '{course_db}',
             *glob.glob('/tmp/course-grade-jobs-*/*/secret/gradebook.db')]:
    try:
        print('READ', path, len(open(path, 'rb').read()))
    except Exception as e:
        print('DENIED', path, type(e).__name__)
"""
WRITE_OUTSIDE = """
for path in ['{repo}/pwned-{token}', '/tmp/pwned-{token}', '../../../gradebook.db', '../../../../secret/gradebook.db']:
    try:
        with open(path, 'a') as f:
            f.write('pwned')
        print('WROTE', path)
    except Exception as e:
        print('DENIED', path, type(e).__name__)
"""
NETWORK = """
import socket
try:
    socket.create_connection(('1.1.1.1', 80), timeout=3)
    print('CONNECTED')
except OSError as e:
    print('NO NETWORK', type(e).__name__)
"""
SPAWN = """
import subprocess, sys
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', 'orphan-{token}'], start_new_session=True)
print('spawned')
"""
PATCH = "torch.allclose = lambda *a, **k: True\ntorch.testing.assert_close = lambda *a, **k: None"


def cases(points: Points, token: str, repo: Path, solutions: Path, course_db: Path) -> list[Case]:
    """`token` marks the files and processes the hostile submissions try to leave behind."""
    LAST_TEST[0] = points.last
    fmt = {"token": token, "repo": repo, "solutions": solutions, "course_db": course_db}
    full = lambda p: p.max
    return [
        # issue 3: perfect, blank, half right, tests edited, a test cell deleted
        Case("e2e-perfect", lambda b, f, s: write(f, s, b.notebook("all")), "graded", full),
        Case("e2e-blank", lambda b, f, s: write(f, s, b.notebook()), "graded", lambda p: 0.0),
        Case("e2e-half", lambda b, f, s: write(f, s, b.notebook(HALF)), "graded", lambda p: p.of(*HALF)),
        Case("e2e-tests-edited", _edited, "graded", lambda p: p.of(*HALF)),
        Case("e2e-test-deleted", _deleted, "graded", lambda p: p.max - p.of("ex02")),
        # limits and crashes
        Case("infinite-loop", at_end("while True:\n    pass"), "timeout", full, "per-cell limit"),
        Case("os-exit", at_end("import os\nos._exit(0)"), "error", lambda p: None, "kernel died"),
        Case("system-exit", at_end("raise SystemExit(3)"), "flagged", full, "raises SystemExit"),
        Case("memory-bomb", at_end("hog = bytearray(64 * 2**30)"), "oom", full, "memory limit"),
        Case("output-bomb", at_end("print('x' * 20_000_000)"), "graded", full, "truncated"),
        Case("stderr-noise", _stderr_noise, "graded", full),
        # the notebook's structure
        Case("test-retyped", _retyped, "graded", lambda p: p.max - p.of("ex04")),
        Case("test-duplicated", _duplicate("ex05_gelu"), "graded", full),
        Case("solution-copied", _duplicate("ex06_solution", timestamp=EARLY), "graded", full),
        Case("renamed-notebook", _renamed, "invalid", lambda p: None, "exercises-final.ipynb"),
        Case("no-notebook", _no_notebook, "invalid", lambda p: None, "no exercises.ipynb"),
        Case("corrupt-json", _corrupt, "invalid", lambda p: None, "not a valid notebook"),
        Case("empty-folder", _empty, "missing", lambda p: None, "empty"),
        Case("oversized-notebook", _oversized_notebook, "invalid", lambda p: None, "larger than"),
        Case("oversized-extra-file", _oversized_extra, "graded", full),
        # reaching outside
        Case("read-secrets", at_end(READ_SECRETS.format(**fmt)), "flagged", full, "uses open"),
        Case("write-outside", at_end(WRITE_OUTSIDE.format(**fmt)), "flagged", full, "uses open"),
        Case("network", at_end(NETWORK), "flagged", full, "imports socket"),
        Case("spawn-orphan", at_end(SPAWN.format(**fmt)), "flagged", full, "imports subprocess"),
        # tampering with the checks
        Case("patch-allclose", _at_top(PATCH, ()), "flagged", lambda p: 0.0, "assigns to torch.allclose"),
        Case("patch-harness", _at_top("H.expect_close = lambda *a, **k: None", "all"), "flagged",
             lambda p: 0.0, "assigns to H.expect_close"),
        Case("runtime-tamper", _runtime_tamper, "flagged",
             lambda p: p.before("ex09_which"), "torch.allclose was rebound"),
        # bookkeeping
        Case("late", _late, "late", full, "after the due date"),
        Case("bad id!", _bad_id, "invalid", lambda p: None, "not a valid student id"),
        Case("ghost", lambda b, f, s: None, "missing", lambda p: None, "no submission"),
    ]
