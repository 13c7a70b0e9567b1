"""The static scan flags tampering and escapes, and never an honest answer, right or wrong."""

from __future__ import annotations

import importlib.util

import pytest
from grading_builders import solutions_by_id

from course.grading import release, tamper

HOSTILE = {  # source -> a word the note must contain
    "import torch\ntorch.allclose = lambda *a, **k: True": "torch.allclose",
    "torch.testing.assert_close = lambda *a, **k: None": "torch.testing.assert_close",
    "t = torch.Tensor\nt.__eq__ = lambda a, b: True": "__eq__",
    "H.expect_close = print": "H.expect_close",
    "import builtins\nbuiltins.abs = None": "builtins",
    "__builtins__['len'] = None": "__builtins__",
    "import os\nos._exit(0)": "os._exit",
    "raise SystemExit": "SystemExit",
    "exit()": "exit",
    "import ctypes": "ctypes",
    "import subprocess": "subprocess",
    "import sqlite3": "sqlite3",
    "from urllib.request import urlopen": "urllib",
    "exec('x = 1')": "exec",
    "getattr(__import__('torch'), 'equal')": "__import__",
    "x = (1).__class__.__subclasses__()": "__subclasses__",
    "!cat /etc/passwd": "shell escape",
    "%%bash\nls": "%bash",
    "import sys\nsys.settrace(lambda *a: None)": "settrace",
    "get_ipython().set_custom_exc((Exception,), print)": "set_custom_exc",
    "get_ipython().events.register('post_run_cell', print)": "events",
    "get_ipython().input_transformers_post.append(print)": "input_transformers_post",
    "class M(torch.overrides.TorchFunctionMode):\n    pass": "TorchFunctionMode",
    "lib = torch.library.Library('aten', 'IMPL')": "torch.library",
}


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_cells_are_flagged(source):
    findings = tamper.scan_cell(source)
    assert findings and any(HOSTILE[source] in f for f in findings), findings


def _honest_answers() -> list[str]:
    spec = importlib.util.spec_from_file_location(
        "mutants", release.ROOT / "tests" / "exercises" / "mutants.py"
    )
    mutants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutants)
    snippets = [
        s for table in (mutants.WRONG, mutants.RIGHT) for variants in table.values() for *_, s in variants
    ]
    return list(solutions_by_id(release.SOURCE).values()) + [s for s in snippets if isinstance(s, str)]


def test_honest_answers_are_not_flagged():
    answers = _honest_answers()
    assert len(answers) > 30
    for source in answers:
        assert tamper.scan_cell(source) == [], source


@pytest.mark.parametrize(
    "source",
    [
        "def f(x):\n    B, T, H, d = x.shape\n    return H",
        "%time x = 1",
        "import math, torch\nx = torch.zeros(3)\nx[0] = math.pi",
        "y = (",
        "class A:\n    def __init__(self):\n        self.w = 1\n        self.__x = 2",
        "import inspect\nprint(inspect.signature(print))",
        "def attention(input, k, v):\n    return input",
        "import torch\nfrom course.grading import harness as H\nH.setup()",
        "with open('notes.txt', 'w') as f:\n    f.write('x')",
    ],
)
def test_ordinary_code_is_not_flagged(source):
    assert tamper.scan_cell(source) == []
