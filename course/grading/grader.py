"""Grade one submission on the trusted side: the learner's cells run in the jail, the tests run here.

Each test cell of the nbgrader source (visible part and hidden part) executes in this process, with the
instructor's harness `H`, and with every answer name of the assignment bound to a proxy: calling `attention(q,
k, v)` sends q, k, v to the jail, runs the learner's function there and brings back plain data, which
`H.expect_*` compares with the reference. A test scores its points when its code raises nothing; no test
source, hidden input or expected value ever enters the learner's process, and nothing that process says about
itself is read.
"""

from __future__ import annotations

import ast
import math
import re
import time
from dataclasses import dataclass, field

import torch

from course.grading import diagnoses, harness, jail, release, session, tamper, wire

MARKERS = re.compile(r"^[ \t]*### (BEGIN|END) HIDDEN TESTS[^\n]*\n?", re.MULTILINE)
_ATTENTION = (
    "scaled_dot_product_attention",
    "multi_head_attention_forward",
    "_scaled_dot_product_attention_math",
)
_NORMS = ("layer_norm", "rms_norm", "group_norm", "batch_norm", "instance_norm", "native_layer_norm")
FORBIDDEN = {  # exercise: (what it asks for, torch functions its answer may not call)
    "ex01": ("compute attention yourself", _ATTENTION),
    "ex02": ("build the causal mask and the masked softmax yourself", _ATTENTION),
    "ex03": ("split and merge the heads yourself", _ATTENTION),
    "ex06": ("compute LayerNorm and RMSNorm yourself", _NORMS),
    "ex11": ("write multi-head attention yourself", _ATTENTION),  # the capstone: the learner's own GPT
    "ex12": ("write the block yourself", _ATTENTION),
    "ex13": ("write the decoder yourself", _ATTENTION),
}


@dataclass
class Verdict:
    grade_id: str
    points: float
    earned: float
    message: str = ""  # first line: the diagnosis, or why the test failed


@dataclass
class Outcome:
    verdicts: list[Verdict]
    cells: dict[int, session.CellRun]
    timed_out: list[str] = field(default_factory=list)  # exercises (or cells) that went over their time
    memory: list[str] = field(default_factory=list)
    crashed: list[int] = field(default_factory=list)
    wall_s: float = 0.0
    starts: int = 0


def answer_names(source_nb) -> tuple[set[str], set[str]]:
    """(functions, values) the solution cells of the source define at top level: what the tests may use."""
    functions, values = set(), set()
    for cell in source_nb.cells:
        if not cell.metadata.get("nbgrader", {}).get("solution") or cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                functions.add(node.name)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                values |= {t.id for t in targets if isinstance(t, ast.Name)}
    return functions, values


def test_cells(source_nb) -> list[tuple[str, float, str]]:
    """(grade_id, points, code with hidden tests included) of every autograded test cell of the source."""
    return [
        (
            c.metadata["nbgrader"]["grade_id"],
            float(c.metadata["nbgrader"].get("points", 0)),
            MARKERS.sub("", c.source),
        )
        for c in source_nb.cells
        if c.cell_type == "code"
        and c.metadata.get("nbgrader", {}).get("grade")
        and not c.metadata["nbgrader"].get("solution")
    ]


class _Answer:
    """An answer function of the learner, called through the jail."""

    def __init__(self, run: session.Session, name: str, clock: _Clock):
        self.run, self.__name__, self.clock = run, name, clock

    def __call__(self, *args, **kwargs):
        exercise = self.clock.exercise
        task, names = FORBIDDEN.get(exercise, ("", ()))
        value, called = self.clock.spend(
            lambda budget: self.run.call(self.__name__, args, kwargs, forbidden=names, budget_s=budget)
        )
        if called:
            raise AssertionError(
                f"exercise {int(exercise[2:])} asks you to {task}; your {self.__name__} called {called}"
            )
        if isinstance(value, wire.Unsupported):
            raise AssertionError(
                f"{self.__name__} returned {value!r}: return tensors, numbers, strings, tuples, "
                f"lists, sets or dicts"
            )
        return value


class _Clock:
    """Time budget per exercise: every call and callback of its tests counts."""

    def __init__(self, budget_s: float):
        self.budget_s, self.spent, self.exercise = budget_s, {}, ""

    def left(self) -> float:
        return self.budget_s - self.spent.get(self.exercise, 0.0)

    def spend(self, fn):
        if self.left() <= 0:
            raise session.CallTimeout(
                f"exercise {int(self.exercise[2:])} used up its {self.budget_s:g} s budget"
            )
        start = time.monotonic()
        try:
            return fn(self.left())
        finally:
            self.spent[self.exercise] = self.spent.get(self.exercise, 0.0) + time.monotonic() - start


def grade(cells: list[tuple[int, str]], source_nb, limits: jail.Limits, *, exercises=None) -> Outcome:
    """Run `cells` (the learner's code cells, numbered as in the submission) in a jail and every test of
    `source_nb` (of `exercises` only, when given) here."""
    start = time.monotonic()
    functions, values = answer_names(source_nb)
    run = session.Session(cells, limits)
    clock = _Clock(limits.exercise_s)
    tests = [t for t in test_cells(source_nb) if exercises is None or release.exercise_of(t[0]) in exercises]
    verdicts, timed_out, memory = [], [], []
    try:
        run.start()
        for grade_id, points, code in tests:
            clock.exercise = release.exercise_of(grade_id)
            ns = {"H": harness, "torch": torch, "math": math, "__name__": "__grading__"}
            ns.update({name: _Answer(run, name, clock) for name in functions})
            message, late = _run_test(code, ns, run, values, clock)
            if late:
                timed_out.append(clock.exercise)
            if "MemoryError" in message:
                memory.append(clock.exercise)
            verdicts.append(Verdict(grade_id, points, 0.0 if message else points, message))
    except session.LearnerError as e:  # the jail never started, or the wall-clock limit hit during start-up
        done = {v.grade_id for v in verdicts}
        verdicts += [Verdict(g, p, 0.0, str(e)) for g, p, _ in tests if g not in done]
        if isinstance(e, session.CallTimeout):
            timed_out.append("wall")
        elif not run.runs:
            raise
    finally:
        run.close()
    cells_run = run.runs
    for n, c in cells_run.items():
        if c.fate == "timeout":
            timed_out.append(f"cell {n}")
        if c.error and "MemoryError" in c.error:
            memory.append(f"cell {n}")
    return Outcome(
        verdicts,
        cells_run,
        list(dict.fromkeys(timed_out)),
        list(dict.fromkeys(memory)),
        sorted(n for n, c in cells_run.items() if c.fate == "crashed"),
        round(time.monotonic() - start, 2),
        run.starts,
    )


def _run_test(code: str, ns: dict, run: session.Session, values: set[str], clock: _Clock) -> tuple[str, bool]:
    """('', False) when the test passes, else (its first line of explanation, whether it ran out of time)."""
    used = {n.id for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Name)}
    try:
        for name in sorted(used & values):
            value, _ = clock.spend(lambda budget, name=name: run.get(name, budget_s=budget))
            ns[name] = value
        exec(compile(code, "<test>", "exec"), ns)  # noqa: S102 - the instructor's test code, trusted
    except session.CallTimeout as e:
        return _first(str(e)), True
    except session.InputModified as e:
        return _first(f"{e}. Likely mistake: {diagnoses.message('input_modified')}"), False
    except session.LearnerError as e:
        return _first(str(e)), False
    except AssertionError as e:
        return _first(str(e) or "a test assertion failed"), False
    except NameError as e:
        return _first(f"{e}: define it in the answer cell"), False
    except Exception as e:  # noqa: BLE001 - the learner's value made the test's own code fail
        return _first(f"{type(e).__name__}: {e}"), False
    return "", False


def _first(text: str) -> str:
    """Diagnosis first: 'Likely mistake: ...' moves to the front of the message."""
    return diagnoses.diagnosis_first(wire.clean(text))[:1500]


def review_notes(cells: list[tuple[int, str]]) -> list[str]:
    """The static scan, as notes for the instructor: it never changes a score."""
    return [f"cell {n} {finding}" for n, source in cells for finding in tamper.scan_cell(source)]
