"""The static scan flags tampering and escapes, and never an honest answer, right or wrong."""
from __future__ import annotations

import importlib.util

import pytest
from grading_builders import solutions_by_id

from course.grading import release, tamper

HOSTILE = {  # source -> a word the finding must contain
    "import torch\ntorch.allclose = lambda *a, **k: True": "torch.allclose",
    "torch.testing.assert_close = lambda *a, **k: None": "torch.testing.assert_close",
    "t = torch.Tensor\nt.__eq__ = lambda a, b: True": "__eq__",
    "from torch import Tensor\nTensor.__bool__ = lambda s: True": "Tensor.__bool__",
    "H.expect_close = print": "H.expect_close",
    "import numpy as torch": "'torch'",
    "H = None": "'H'",
    "def torch():\n    pass": "'torch'",
    "del torch.testing": "deletes",
    "setattr(torch, 'allclose', max)": "setattr",
    "import builtins\nbuiltins.abs = None": "builtins",
    "__builtins__['len'] = None": "__builtins__",
    "import sys\nsys.modules['course.grading.harness'] = None": "sys.modules",
    "import os\nos._exit(0)": "os._exit",
    "raise SystemExit": "SystemExit",
    "exit()": "exit",
    "import ctypes": "ctypes",
    "import gc\ngc.get_referrers(torch.allclose)": "gc",
    "import inspect": "inspect",
    "import subprocess": "subprocess",
    "import sqlite3": "sqlite3",
    "from urllib.request import urlopen": "urllib",
    "print(open('../../../gradebook.db').read())": "open",
    "exec('x = 1')": "exec",
    "getattr(__import__('torch'), 'equal')": "__import__",
    "x = (1).__class__.__subclasses__()": "__class__",
    "!cat /etc/passwd": "shell escape",
    "%%bash\nls": "%bash",
    "for torch in range(3):\n    pass": "'torch'",
}


@pytest.mark.parametrize("source", HOSTILE)
def test_hostile_cells_are_flagged(source):
    findings = tamper.scan_cell(source)
    assert findings and any(HOSTILE[source] in f for f in findings), findings


def _honest_answers() -> list[str]:
    spec = importlib.util.spec_from_file_location("mutants", release.ROOT / "tests" / "exercises" / "mutants.py")
    mutants = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mutants)
    snippets = [s for table in (mutants.WRONG, mutants.RIGHT) for variants in table.values() for *_, s in variants]
    return list(solutions_by_id(release.SOURCE).values()) + [s for s in snippets if isinstance(s, str)]


def test_honest_answers_are_not_flagged():
    answers = _honest_answers()
    assert len(answers) > 30
    for source in answers:
        assert tamper.scan_cell(source) == [], source


@pytest.mark.parametrize("source", ["def f(x):\n    B, T, H, d = x.shape\n    return H", "%time x = 1",
                                    "import math, torch\nx = torch.zeros(3)\nx[0] = math.pi", "y = (",
                                    "class A:\n    def __init__(self):\n        self.w = 1\n        self.__x = 2"])
def test_ordinary_code_is_not_flagged(source):
    assert tamper.scan_cell(source) == []


def test_probe_report_needs_the_nonce():
    out = [{"output_type": "stream", "name": "stdout", "text": f"{tamper.PROBE_MARK} abc []\n"}]
    assert tamper.read_probe(out, "abc") == []
    assert tamper.read_probe(out, "other") is None
    bad = [{"output_type": "stream", "name": "stdout", "text": f'{tamper.PROBE_MARK} abc ["torch.allclose was rebound"]'}]
    assert tamper.read_probe(bad, "abc") == ["torch.allclose was rebound"]
    assert tamper.read_probe([], "abc") is None
