"""The pipeline's pieces without a kernel: the notebook actually graded (sanitize), collecting from a folder,
from LMS zip files and from nbgrader's exchange, and the contract's throw-away run on submissions that cannot
be graded."""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
import zipfile

import nbformat
import pytest
from grading_builders import Builder, gid, write

from course.grading import collect, release
from course.grading.course_dir import course_id
from course.grading.sanitize import Reference, learner_cells, sanitize


@pytest.fixture(scope="module")
def builder():
    return Builder(release.RELEASE, release.SOURCE)


@pytest.fixture(scope="module")
def ref():
    return Reference.read(release.RELEASE)


def test_sanitize_restores_the_locked_skeleton(builder, ref):
    nb = builder.notebook("all")
    first_test = next(g for g in ref.tests)
    i = builder.index(nb, first_test)
    nb.cells[i].cell_type, nb.cells[i].source = "markdown", "retyped"  # re-typed test cell
    nb.cells[i].pop("outputs"), nb.cells[i].pop("execution_count")
    deleted = list(ref.tests)[3]
    nb.cells.pop(builder.index(nb, deleted))  # deleted test cell
    sol = builder.index(nb, "ex06_solution")
    nb.cells.insert(sol + 1, copy.deepcopy(nb.cells[sol]))  # copied solution cell
    fake = nbformat.v4.new_code_cell(
        "x = 1",
        metadata={
            "nbgrader": {"grade": True, "grade_id": "bonus", "points": 99, "locked": True, "solution": False},
            "course_grading": {"probe": True},
        },
    )
    nb.cells.insert(0, fake)  # forged grade cell before setup
    out = sanitize(nb, ref)
    ids = [gid(c) for c in out.cells if gid(c)]
    assert ids.count("ex06_solution") == 1 and "bonus" not in ids
    assert [g for g in ids if g in ref.tests] == list(ref.tests)  # every test, once, in order
    restored = next(c for c in out.cells if gid(c) == first_test)
    assert restored.cell_type == "code" and restored.source == ref.locked[first_test].source
    forged = next(c for c in out.cells if c.source == "x = 1")
    assert "nbgrader" not in forged.metadata and forged.metadata["course_grading"] == {"cell": 1}


def test_learner_cells_are_the_editable_code_cells_only(builder, ref):
    nb = builder.after(builder.notebook("all"), "ex01_solution", "extra = 1")
    test = builder.index(nb, "ex02_mask")
    nb.cells[test].source = "print('my own version of the test')"  # an edited test cell is restored, not run
    cells = learner_cells(sanitize(nb, ref), ref)
    sources = [s for _, s in cells]
    assert "extra = 1" in sources and not any("my own version" in s or "H.expect" in s for s in sources)
    assert len(cells) == len([c for c in ref.nb.cells if c.metadata.get("nbgrader", {}).get("solution")]) + 1
    numbers = [n for n, _ in cells]
    assert numbers == sorted(numbers) and numbers[0] > 1  # numbered as in the submission


def test_odd_folder_names_get_unique_stable_ids(tmp_path):
    names = [os.fsdecode(b"caf\xe9"), "caf?", "caf_", "a b"]
    ids = [collect.bad_id(n) for n in names]
    assert len(set(ids)) == len(ids) and ids == [collect.bad_id(n) for n in names]
    assert all(collect.STUDENT_ID.match(i) for i in ids)


def _grade(*args, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "course", "grade", *map(str, args)],
        cwd=release.ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.xdist_group("grading-steps")
def test_contract_run_in_a_throw_away_course(tmp_path, builder):
    subs = tmp_path / "subs"
    write(subs, "renamed", builder.notebook("all"), name="Copy of exercises.ipynb")
    write(subs, "corrupt", raw="not json")
    (subs / "empty").mkdir()
    private_tmp = tmp_path / "tmp"  # its own TMPDIR: other workers' grading runs create course-grade-* too
    private_tmp.mkdir()
    done = _grade(subs, "--out", tmp_path / "grades.csv", TMPDIR=str(private_tmp))
    assert done.returncode == 0, done.stderr
    rows = {r["student_id"]: r for r in csv.DictReader((tmp_path / "grades.csv").read_text().splitlines())}
    assert {k: (r["status"], r["score"]) for k, r in rows.items()} == {
        "renamed": ("invalid", ""),
        "corrupt": ("invalid", ""),
        "empty": ("missing", ""),
    }
    assert not list(private_tmp.glob("course-grade-*"))  # the throw-away course is gone


@pytest.mark.slow
@pytest.mark.xdist_group("grading-steps")
def test_collect_from_folder_zip_and_exchange(tmp_path, builder):
    course = tmp_path / "course"
    folder = tmp_path / "folder"
    write(folder, "alice", builder.notebook("all"), timestamp="2026-02-01 10:00:00 UTC")
    (folder / "alice" / "junk.bin").write_bytes(b"\0" * 1000)
    assert _grade("collect", folder, "--course", course).returncode == 0
    assert sorted(p.name for p in (course / "submitted" / "alice" / "transformers").iterdir()) == [
        ".collect.json",
        "exercises.ipynb",
        "timestamp.txt",
    ]

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    nb_text = nbformat.writes(builder.notebook(("ex01",)))
    with zipfile.ZipFile(downloads / "lms-export.zip", "w") as z:
        z.writestr("bob_attempt_2026-02-01_exercises.ipynb", nb_text)
        z.writestr("carol/exercises.ipynb", nb_text)
    done = _grade("collect", downloads, "--zip", "--course", course)
    assert done.returncode == 0, done.stdout + done.stderr
    for sid in ("bob", "carol"):
        assert (course / "submitted" / sid / "transformers" / "exercises.ipynb").read_text() == nb_text

    exchange = tmp_path / "exchange"
    cid = course_id()
    inbound = exchange / cid / "inbound" / "dave+transformers+2026-02-01 10:00:00.000000 UTC+abc"
    inbound.mkdir(parents=True)
    (inbound / "exercises.ipynb").write_text(nb_text)
    (inbound / "timestamp.txt").write_text("2026-02-01 10:00:00.000000 UTC")
    done = _grade("collect", "--exchange", exchange, "--course", course)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (course / "submitted" / "dave" / "transformers" / "exercises.ipynb").read_text() == nb_text
    note = json.loads((course / "submitted" / "dave" / "transformers" / ".collect.json").read_text())
    assert "exercises.ipynb" in note["files"]
