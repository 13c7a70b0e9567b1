"""The batch: 30 submissions (the issue-3 five, right and wrong answers, the hostile corpus, a rostered
student who submitted nothing), each with its expected status, score and reason, all built from the release
and the solution source. Scores are expressed through the release's points, never typed in."""

from __future__ import annotations

import ast
import copy
import os
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
    make: Callable[[Builder, Path, str], None]  # (builder, submissions folder, student id): writes the folder
    status: str
    score: Callable[[Points], float | None]
    reason: str = ""  # a substring of the reason ("" : reason must be empty)


class Points:
    """Points of the release's test cells, by exercise and by position."""

    def __init__(self, release: nbformat.NotebookNode):
        self.order = [
            (gid(c), float(c.metadata["nbgrader"]["points"]))
            for c in release.cells
            if c.metadata.get("nbgrader", {}).get("grade") and not c.metadata["nbgrader"].get("solution")
        ]
        self.max = sum(p for _, p in self.order)

    def of(self, *exercises: str) -> float:
        return sum(p for g, p in self.order if g.split("_")[0] in exercises)

    def before(self, grade_id: str) -> float:
        """Points of the tests strictly before test `grade_id`."""
        names = [g for g, _ in self.order]
        return sum(p for _, p in self.order[: names.index(grade_id)])

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
    name = next(
        n.name for n in ast.parse(b.solutions["ex01_solution"]).body if isinstance(n, ast.FunctionDef)
    )
    noisy = (
        f"\nimport logging, sys, warnings\n_plain = {name}\n\ndef {name}(*args, **kwargs):\n"
        "    print('50%|#####     | 5/10', file=sys.stderr)\n    warnings.warn('a learner warning')\n"
        "    logging.getLogger('learner').error('log noise')\n    return _plain(*args, **kwargs)\n"
    )
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
    nb = b.notebook(
        "all"
    )  # rebinding through a container: invisible to the static scan, caught by the probes
    write(folder, sid, b.after(nb, LAST_TEST[0], "_m = [torch]\n_m[0].allclose = lambda *a, **k: True"))


def _late(b, folder, sid):
    write(folder, sid, b.notebook("all"), timestamp=LATE)


def _bad_id(b, folder, sid):
    write(folder, sid, b.notebook("all"))


READ_SECRETS = """
import glob, os
hits = []
for path in ['{solutions}', '{course_db}', '{repo}/.git/config', '{repo}/solutions',
             os.path.expanduser('~/.bashrc'), '/root/.bashrc', '/root/.ssh', '/etc/passwd', '/home',
             *glob.glob('/tmp/course-grade-*/**/gradebook.db', recursive=True),
             *glob.glob('/run/**/*.sock', recursive=True)]:
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, 'rb').read(10)
        hits.append(path)
    except Exception:
        pass
print('LEAKS', hits)
print('ENV', sorted(os.environ))
print('FDS', sorted(os.listdir('/proc/self/fd')))
print('HISTORY', [line for line in globals().get('In', []) if 'expect' in line or 'HIDDEN' in line])
"""
WRITE_OUTSIDE = """
for path in ['{repo}/pwned-{token}', '/tmp/pwned-{token}', '{course_db}']:
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
subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)', 'orphan-{token}'],
                 start_new_session=True)
print('spawned')
"""
PATCH = "torch.allclose = lambda *a, **k: True\ntorch.testing.assert_close = lambda *a, **k: None"
# Attacks that beat a grader sharing the learner's process; each goes with answers that are all wrong.
SHELL_HOOKS = """
ip = get_ipython()
ip.set_custom_exc((BaseException,), lambda *a, **k: None)
ip.events.register('post_run_cell', lambda result: setattr(result, 'error_in_exec', None))
ip.input_transformers_post.append(lambda lines: [l for l in lines if 'expect' not in l])
"""
TRACING = """
import sys
def _tracer(frame, event, arg):
    if event == 'exception':
        frame.f_locals.clear()
    return _tracer
sys.settrace(_tracer)
sys.setprofile(lambda *a: None)
"""
DISPATCH = """
from torch.overrides import TorchFunctionMode
class Yes(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        if getattr(func, '__name__', '') in ('allclose', 'equal', 'isclose', 'assert_close'):
            return True
        return func(*args, **(kwargs or {}))
Yes().__enter__()
lib = torch.library.Library('aten', 'IMPL')
lib.impl('allclose', lambda *a, **k: True, 'CPU')
"""
STDOUT_FORGE = """
import sys
for g in ['ex01_weights', 'ex01_output', 'ex02_mask']:
    print(f'✓ {g}: 2 / 2')
sys.stdout.write('{"status": "graded", "score": 49}\\n')
"""


def _wrong_answers(b) -> str:
    """Every answer name of the assignment defined, every one of them wrong (lying objects included)."""
    lines = [
        "class Liar(float):",
        "    def __eq__(self, other): return True",
        "    def __ne__(self, other): return False",
        "    def __float__(self): return 0.0",
        "    __hash__ = float.__hash__",
        "class LyingTensor(torch.Tensor):",
        "    def __eq__(self, other): return torch.ones((), dtype=torch.bool)",
        "    def allclose(self, *a, **k): return True",
    ]
    for source in b.solutions.values():
        for node in ast.parse(source).body:
            if isinstance(node, ast.FunctionDef):
                lines += [
                    f"def {node.name}(*args, **kwargs):",
                    "    return Liar(1.0) if not args or not hasattr(args[0], 'shape') else "
                    "torch.zeros(1).as_subclass(LyingTensor)",
                ]
            elif isinstance(node, ast.Assign):
                lines += [f"{t.id} = Liar(0.0)" for t in node.targets if isinstance(t, ast.Name)]
    return "\n".join(lines)


def _hostile(attack: str):
    def make(b, folder, sid):
        nb = b.notebook()
        nb = b.after(nb, "setup", attack)
        write(folder, sid, b.after(nb, LAST_TEST[0], _wrong_answers(b)))

    return make


def _fair(b, folder, sid):
    """Right answers in other styles than the solution's: einsum, where, reshape/permute,
    var(unbiased=False)."""
    code = {
        "ex01_solution": "def attention(q, k, v):\n    s = torch.einsum('...qd,...kd->...qk', q, "
        "k) * q.shape[-1] ** -0.5\n"
        "    w = s.exp() / s.exp().sum(-1, keepdim=True)\n    return "
        "torch.einsum('...qk,...kd->...qd', w, v), w",
        "ex03_solution": "def split_heads(x, n_heads):\n    B, T, D = x.shape\n    return "
        "x.reshape(B, T, n_heads, -1).permute(0, 2, 1, 3)\n\n"
        "def merge_heads(x):\n    return torch.cat(x.unbind(1), dim=-1)",
        "ex06_solution": "def layer_norm(x, weight, bias, eps=1e-5):\n    v = x.var(-1, "
        "unbiased=False, keepdim=True)\n"
        "    return weight * (x - x.mean(-1, keepdim=True)) * torch.rsqrt(v + eps) + bias\n\n"
        "def rms_norm(x, weight, eps=1e-6):\n    return weight * x * (x.pow(2).mean(-1, "
        "keepdim=True) + eps).rsqrt()",
    }
    write(folder, sid, b.notebook("all", code=code))


def _subtle(b, folder, sid):
    """Wrong in exactly one place each: ln1/ln2 swapped in the Pre-LN block, F.layer_norm called in ex06."""
    pre = (
        b.solutions["ex07_solution"]
        .replace("ln1(x)", "LNX(x)")
        .replace("ln2(x)", "ln1(x)")
        .replace("LNX(x)", "ln2(x)", 1)
    )
    ex06 = b.solutions["ex06_solution"].replace(
        "def layer_norm(x, weight, bias, eps=1e-5):",
        "def layer_norm(x, weight, bias, eps=1e-5):\n    return torch.nn.functional.layer_norm(x, "
        "x.shape[-1:], weight, bias, eps)",
    )
    write(folder, sid, b.notebook("all", code={"ex07_solution": pre, "ex06_solution": ex06}))


def _stuck_exercise(b, folder, sid):
    """Exercise 3 loops forever on the hidden tests' head counts, exercise 4 kills the process on a hidden
    size."""
    ex03 = b.solutions["ex03_solution"].replace(
        "    B, T, D = x.shape\n", "    B, T, D = x.shape\n    while n_heads == 3:\n        pass\n", 1
    )
    ex04 = b.solutions["ex04_solution"].replace(
        '    """\n', '    """\n    if d_model == 12288:\n        import os; os._exit(1)\n', 1
    )
    write(folder, sid, b.notebook("all", code={"ex03_solution": ex03, "ex04_solution": ex04}))


def _imports_course(b, folder, sid):
    code = {"ex01_solution": "from course.attention import scaled_dot_product_attention as attention"}
    write(folder, sid, b.notebook("all", code=code))


def _surrogates(b, folder, sid):
    nb = b.notebook("all")
    write(folder, sid, b.after(nb, LAST_TEST[0], "print('\\ud800 lone')\nUNNORMALIZED = 'pre\\udfff'"))


def _odd_file_names(b, folder, sid):
    d = write(folder, sid, b.notebook("all"))
    (d / os.fsdecode(b"notes-\xff.ipynb")).write_text("{}")


def cases(points: Points, token: str, repo: Path, solutions: Path, course_db: Path) -> list[Case]:
    """`token` marks the files and processes the hostile submissions try to leave behind."""
    LAST_TEST[0] = points.last
    fmt = {"token": token, "repo": repo, "solutions": solutions, "course_db": course_db}
    full = lambda p: p.max
    zero = lambda p: 0.0
    return [
        # issue 3: perfect, blank, half right, tests edited, a test cell deleted
        Case("e2e-perfect", lambda b, f, s: write(f, s, b.notebook("all")), "graded", full),
        Case("e2e-blank", lambda b, f, s: write(f, s, b.notebook()), "graded", zero),
        Case("e2e-half", lambda b, f, s: write(f, s, b.notebook(HALF)), "graded", lambda p: p.of(*HALF)),
        Case("e2e-tests-edited", _edited, "graded", lambda p: p.of(*HALF)),
        Case("e2e-test-deleted", _deleted, "graded", lambda p: p.max - p.of("ex02")),
        # limits and crashes: a stuck or fatal cell costs that cell, a stuck or fatal exercise that exercise
        Case("infinite-loop", at_end("while True:\n    pass"), "timeout", full, "per-cell limit"),
        Case("os-exit", at_end("import os\nos._exit(0)"), "flagged", full, "ended the grading process"),
        Case("system-exit", at_end("raise SystemExit(3)"), "flagged", full, "raises SystemExit"),
        Case("memory-bomb", at_end("hog = bytearray(64 * 2**30)"), "oom", full, "memory limit"),
        Case("output-bomb", at_end("print('x' * 20_000_000)"), "graded", full, "truncated"),
        Case("stderr-noise", _stderr_noise, "graded", full),
        Case(
            "stuck-exercise",
            _stuck_exercise,
            "timeout",
            lambda p: p.max - p.of("ex03") - p.of("ex04") / 2,
            "exercise 3 went over",
        ),
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
        Case("odd-file-names", _odd_file_names, "graded", full),
        Case("lone-surrogates", _surrogates, "graded", lambda p: p.max - 1),
        # reaching outside: nothing there to read or write, no network, nothing survives
        Case("read-secrets", at_end(READ_SECRETS.format(**fmt)), "graded", full),
        Case("write-outside", at_end(WRITE_OUTSIDE.format(**fmt)), "graded", full),
        Case("network", at_end(NETWORK), "flagged", full, "imports socket"),
        Case("spawn-orphan", at_end(SPAWN.format(**fmt)), "flagged", full, "imports subprocess"),
        # tampering with the checks: every answer wrong, whatever the learner's process does to itself
        Case("patch-allclose", _at_top(PATCH, ()), "flagged", zero, "assigns to torch.allclose"),
        Case(
            "patch-harness",
            _at_top("H.expect_close = lambda *a, **k: None", "all"),
            "flagged",
            full,
            "assigns to H.expect_close",
        ),
        # it breaks torch.allclose in its own process: its own checks of exercise 10 use it, and lose 5 points
        Case("runtime-tamper", _runtime_tamper, "graded", lambda p: p.max - 5),
        Case("shell-hooks", _hostile(SHELL_HOOKS), "flagged", zero, "set_custom_exc"),
        Case("tracing-hooks", _hostile(TRACING), "flagged", zero, "sys.settrace"),
        Case("torch-dispatch", _hostile(DISPATCH), "flagged", zero, "torch.library"),
        Case("lying-objects", _hostile("pass"), "graded", zero),
        Case("stdout-forgery", _hostile(STDOUT_FORGE), "graded", zero),
        Case("imports-course", _imports_course, "graded", lambda p: p.max - p.of("ex01")),
        # fairness: other right styles get full marks; subtle mistakes lose exactly their tests
        Case("fair-styles", _fair, "graded", full),
        Case("subtle-mistakes", _subtle, "graded", lambda p: p.max - 2 - 2),
        # bookkeeping
        Case("late", _late, "late", full, "after the due date"),
        Case("bad id!", _bad_id, "invalid", lambda p: None, "not a valid student id"),
        Case(os.fsdecode(b"bad-\xff-name"), _bad_id, "invalid", lambda p: None, "not a valid student id"),
        Case("ghost", lambda b, f, s: None, "missing", lambda p: None, "no submission"),
    ]
