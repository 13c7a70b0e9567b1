"""End to end: one `course grade` call on a batch of 30 mixed submissions (the issue-3 five, right and wrong
answers, the hostile corpus), every row's status, score and reason asserted, the gradebook checked against the
CSV, feedback checked for hidden tests, and the jail's runtime evidence inspected."""

from __future__ import annotations

import csv
import fcntl
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from grading_builders import Builder, hidden_lines
from grading_cases import DUE, Points, cases

from course.grading import collect, release
from course.grading.course_dir import Course, course_id

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading-batch")]
LIMITS = [
    "--cell-s",
    "10",
    "--exercise-s",
    "8",
    "--wall-s",
    "240",
    "--memory-mb",
    "2048",
    "--output-bytes",
    "100000",
    "--notebook-mb",
    "5",
    "--jobs",
    "2",
]


def csv_id(sid: str) -> str:
    return sid if collect.STUDENT_ID.match(sid) else collect.bad_id(sid)


def grade(*args, cwd=release.ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "GRADER_SECRET": "instructor-only"}
    return subprocess.run(
        [sys.executable, "-m", "course", "grade", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _shared_dir(tmp_path_factory) -> Path:
    """One folder per test session, common to all xdist workers (so that the batch is graded once)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "grading-batch"


@pytest.fixture(scope="session")
def batch(tmp_path_factory):
    tmp = _shared_dir(tmp_path_factory)
    tmp.mkdir(exist_ok=True)
    subs, course, out, done_file = tmp / "submissions", tmp / "course", tmp / "grades.csv", tmp / "done.json"
    builder = Builder(release.RELEASE, release.SOURCE)
    points = Points(builder.release)
    with open(tmp / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker grades, the others wait for its CSV
        if not done_file.exists():
            token = secrets.token_hex(6)
            table = cases(points, token, release.ROOT, release.SOURCE, course / "gradebook.db")
            subs.mkdir()
            for case in table:
                case.make(builder, subs, case.sid)
            (tmp / "roster.txt").write_text(
                "\n".join(c.sid for c in table if collect.STUDENT_ID.match(c.sid))
            )
            done = grade(
                subs, "--out", out, "--course", course, "--roster", tmp / "roster.txt", "--due", DUE, *LIMITS
            )
            done_file.write_text(
                json.dumps({"token": token, "rc": done.returncode, "log": done.stdout + done.stderr})
            )
    state = json.loads(done_file.read_text())
    assert state["rc"] == 0, state["log"]
    with open(out, newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    table = cases(points, state["token"], release.ROOT, release.SOURCE, course / "gradebook.db")
    return {
        "rows": rows,
        "table": table,
        "points": points,
        "course": Course(course),
        "out": out,
        "tmp": tmp,
        "token": state["token"],
    }


def test_one_row_per_submission_with_the_contract_columns(batch):
    assert len(batch["table"]) == len({c.sid for c in batch["table"]}) == 42
    assert sorted(batch["rows"]) == sorted(csv_id(c.sid) for c in batch["table"])
    header = batch["out"].read_text().splitlines()[0].split(",")
    assert header[:5] == ["student_id", "status", "score", "max_score", "reason"]
    assert [h for h in header if re.fullmatch(r"ex\d\d", h)] == [f"ex{i:02d}" for i in range(1, 11)]
    assert {r["max_score"] for r in batch["rows"].values()} == {f"{batch['points'].max:g}"}


@pytest.mark.parametrize("index", range(42))
def test_each_submission_gets_its_defined_outcome(batch, index):
    case = batch["table"][index]
    row = batch["rows"][csv_id(case.sid)]
    expected = case.score(batch["points"])
    assert row["status"] == case.status, row
    assert row["score"] == ("" if expected is None else f"{expected:g}"), row
    if case.reason:
        assert case.reason in row["reason"], row
    else:
        assert row["reason"] == "", row
    if expected is not None:  # the per-exercise columns add up to the score
        assert sum(float(row[f"ex{i:02d}"]) for i in range(1, 11)) == pytest.approx(expected)
    else:  # nothing graded: blank, never a silent 0
        assert all(row[f"ex{i:02d}"] == "" for i in range(1, 11))


def test_issue3_per_exercise_points(batch):
    rows, p = batch["rows"], batch["points"]
    for ex in (f"ex{i:02d}" for i in range(1, 11)):
        assert float(rows["e2e-perfect"][ex]) == p.of(ex)
        assert float(rows["e2e-blank"][ex]) == 0.0
        assert float(rows["e2e-half"][ex]) == (p.of(ex) if ex <= "ex05" else 0.0)
        assert float(rows["e2e-tests-edited"][ex]) == (p.of(ex) if ex <= "ex05" else 0.0)
        assert float(rows["e2e-test-deleted"][ex]) == (0.0 if ex == "ex02" else p.of(ex))


def test_gradebook_matches_the_csv(batch):
    from nbgrader.api import Gradebook, MissingEntry

    course = batch["course"]
    with Gradebook(f"sqlite:///{course.db}", course_id=course_id()) as gb:
        for sid, row in batch["rows"].items():
            if (
                not collect.STUDENT_ID.match(sid)
                or row["status"] == "missing"
                and row["reason"] == "no submission"
            ):
                continue
            try:
                sub = gb.find_submission(course.assignment.name, sid)
            except MissingEntry:
                sub = None
            if row["score"] == "":
                assert sub is None, sid
            else:
                assert sub is not None and sub.score == pytest.approx(float(row["score"])), sid
                assert sub.needs_manual_grade is False
                assert (sub.total_seconds_late > 0) == (
                    row["status"] == "late" or "after the due date" in row["reason"]
                )


def test_feedback_never_shows_hidden_tests_or_tracebacks(batch):
    course, hidden = batch["course"], hidden_lines(release.SOURCE)
    assert hidden
    pages = sorted((course.root / "feedback").rglob("*.html"))
    graded = [sid for sid, r in batch["rows"].items() if r["score"] != ""]
    assert len(pages) == len(graded)
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "\n", page.read_text()))
        assert "Traceback" not in text and "HIDDEN TESTS" not in text, page
        leaked = hidden & {line.rstrip() for line in text.splitlines()}
        assert not leaked, (page, sorted(leaked)[:3])


def _cell_output(course: Course, sid: str, marker: str) -> str:
    nb = nbformat.read(course.autograded(sid), as_version=4)
    cell = next(c for c in nb.cells if marker in c.source)
    return "".join(str(o.get("text", "")) for o in cell.get("outputs", []))


def test_nothing_of_the_instructor_is_visible_from_the_jail(batch):
    out = _cell_output(batch["course"], "read-secrets", "LEAKS")
    assert "LEAKS []" in out and "HISTORY []" in out, out
    env = out.split("ENV ", 1)[1].splitlines()[0]
    assert "GRADER_SECRET" not in env and "PATH" in env, env
    fds = out.split("FDS ", 1)[1].splitlines()[0]
    assert fds.count("'") == 2 * 5, (
        fds
    )  # stdin/out/err (/dev/null), the channel, and listdir's own descriptor


def test_writes_outside_the_jail_do_not_land(batch):
    out = _cell_output(batch["course"], "write-outside", "WROTE")
    assert f"DENIED {batch['course'].db}" in out, (
        out
    )  # the jail's own tmpfs takes writes; nothing reaches the host
    token = batch["token"]
    assert not (release.ROOT / f"pwned-{token}").exists() and not Path(f"/tmp/pwned-{token}").exists()
    assert b"pwned" not in batch["course"].db.read_bytes()


def test_no_network_and_no_surviving_processes(batch):
    assert "NO NETWORK" in _cell_output(batch["course"], "network", "socket.create_connection")
    survivors = []
    for proc in Path("/proc").iterdir():
        try:
            if f"orphan-{batch['token']}".encode() in (proc / "cmdline").read_bytes():
                survivors.append(proc.name)
        except OSError:
            continue
    assert survivors == []


def test_feedback_puts_the_score_table_and_diagnosis_first(batch):
    page = (batch["course"].feedback("e2e-half")).read_text()
    assert page.index("<table") < page.index("ex01_weights")
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "✗ ex06_layernorm: 0 / 2 — " in text and "✓ ex01_weights: 2 / 2" in text


def test_rerunning_steps_is_idempotent(batch, tmp_path):
    course = Course(tmp_path / "course")  # a copy: other tests read the batch's course meanwhile
    shutil.copytree(batch["course"].root, course.root)
    again = tmp_path / "again.csv"
    done = grade(
        "autograde", "--course", course.root, "--student", "e2e-half", "--student", "os-exit", *LIMITS
    )
    assert done.returncode == 0, done.stderr
    assert grade("feedback", "--course", course.root).returncode == 0
    done = grade("export", "--course", course.root, "--out", again, "--roster", batch["tmp"] / "roster.txt")
    assert done.returncode == 0, done.stderr
    assert again.read_text() == batch["out"].read_text()
