"""End to end: `course grade --assignment capstone` on three submissions built from the release (all answers,
two known mistakes, untouched stubs): the CSV's scores per exercise, and the diagnoses in the records."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from grading_builders import Builder, write

from course.grading import release

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading-batch")]
SOURCE, RELEASE = release.paths("capstone")
WRONG = {  # appended after the answers: final norm forgotten (13), temperature after the softmax (14)
    "ex13_solution": "\n\n_forward = GPT.forward\n\n\n"
    "def _no_final_norm(self, idx, cache=None):\n"
    "    ln_f, self.ln_f = self.ln_f, None\n"
    "    try:\n"
    "        return _forward(self, idx, cache)\n"
    "    finally:\n"
    "        self.ln_f = ln_f\n\n\n"
    "GPT.forward = _no_final_norm\n",
    "ex14_solution": "\n\n_probs = next_token_probs\n\n\n"
    "def next_token_probs(logits, temperature=1.0, top_k=None, top_p=None):\n"
    "    if temperature == 0:\n"
    "        return _probs(logits, 0)\n"
    "    return _probs(logits, 1.0, top_k, top_p) / temperature\n",
}


def test_course_grade_assignment_capstone(tmp_path):
    builder = Builder(RELEASE, SOURCE)
    subs = tmp_path / "submissions"
    write(subs, "perfect", builder.notebook("all"), name="capstone.ipynb")
    partial = builder.notebook("all")
    for cell in partial.cells:
        cell.source += WRONG.get(cell.metadata.get("nbgrader", {}).get("grade_id"), "")
    write(subs, "partial", partial, name="capstone.ipynb")
    write(subs, "stubs", builder.notebook(), name="capstone.ipynb")
    out, course = tmp_path / "grades.csv", tmp_path / "course"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "course",
            "grade",
            str(subs),
            "--out",
            str(out),
            "--course",
            str(course),
            "--assignment",
            "capstone",
            "--jobs",
            "2",
            "--exercise-s",
            "60",
            "--wall-s",
            "400",
        ],
        cwd=release.ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["student_id"]: r for r in csv.DictReader(out.open())}
    full = {"ex11": 6, "ex12": 4, "ex13": 7, "ex14": 8}
    assert {ex: float(rows["perfect"][ex]) for ex in full} == full and float(rows["perfect"]["score"]) == 25
    assert rows["perfect"]["status"] == "graded" and rows["partial"]["status"] == "graded", rows
    partial_points = {ex: float(rows["partial"][ex]) for ex in full}
    assert partial_points["ex11"] == 6 and partial_points["ex12"] == 4, partial_points
    assert partial_points["ex13"] < 7 and partial_points["ex14"] < 8, partial_points
    assert float(rows["stubs"]["score"]) == 0, rows["stubs"]
    records = {
        p.stem: json.loads(p.read_text()) for p in (course / "work").rglob("*.json") if p.stem in ("partial",)
    }
    messages = " ".join(str(m) for r in records.values() for m in r.get("messages", {}).values())
    assert (
        "final norm was forgotten" in messages and "temperature was applied after the softmax" in messages
    ), messages[:2000]
