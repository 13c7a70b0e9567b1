"""Collecting submissions into the course: from a folder (SUBMISSIONS/<student>/<notebook>), from LMS zip
downloads (`nbgrader zip_collect`) or from nbgrader's exchange (`nbgrader collect`). Each collected submission
gets a `.collect.json` note (its files, what was left out and why) that autograde reads."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from course.grading.course_dir import Course, course_id, nbgrader

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")


def zip_regexp(notebook: str) -> str:
    """The default file name -> (student_id, file_id) rule of LMS downloads of `notebook`."""
    return rf".*?(?:^|/)(?P<student_id>[A-Za-z0-9.@-]+)(?:_[^/]*)?[/_](?P<file_id>{re.escape(notebook)})$"


def collect_folder(course: Course, submissions: Path, notebook_mb: float) -> list[str]:
    """Copy SUBMISSIONS/<student>/ into the course: the notebook(s) and timestamp.txt only, none over the size
    limit. What was left out is noted in `.collect.json` so that autograde can say why. Returns the student
    ids."""
    students = []
    for entry in sorted(submissions.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        sid = entry.name
        dest = course.submitted(sid) if STUDENT_ID.match(sid) else course.work / "bad-ids" / bad_id(sid)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        files = sorted(p for p in entry.rglob("*") if p.is_file() or p.is_symlink())
        note = {
            "files": [_shown(str(p.relative_to(entry))) for p in files],
            "oversized": [],
            "id": _shown(sid),
        }
        for p in files:
            if p.is_symlink() or p.parent != entry or not (p.suffix == ".ipynb" or p.name == "timestamp.txt"):
                continue
            if p.stat().st_size > notebook_mb * 2**20:
                note["oversized"].append(p.name)
            else:
                shutil.copyfile(p, dest / p.name)
        (dest / ".collect.json").write_text(json.dumps(note))
        students.append(sid)
    return students


def _safe(sid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", sid)[:64].lstrip(".") or "_"


def bad_id(name: str) -> str:
    """A unique, stable row id for a folder name that is not a student id (non-UTF-8 bytes included)."""
    raw = os.fsencode(name)
    return f"{_safe(name)[:48]}-{hashlib.sha256(raw).hexdigest()[:8]}"


def _shown(name: str) -> str:
    """A file or folder name as text that always encodes (undecodable bytes shown as \\xNN)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def collect_zip(course: Course, archives: list[Path], regexp: str | None = None) -> list[str]:
    """LMS downloads: nbgrader zip_collect extracts the archives and files each notebook by `regexp`."""
    name = course.assignment.name
    regexp = regexp or zip_regexp(course.assignment.notebook)
    arch = course.root / "downloaded" / name / "archive"
    shutil.rmtree(arch.parent, ignore_errors=True)
    arch.mkdir(parents=True)
    for a in archives:
        for p in sorted(a.iterdir()) if a.is_dir() else [a]:
            shutil.copyfile(p, arch / p.name)
    done = nbgrader(
        ["zip_collect", name, "--force", f"--FileNameCollectorPlugin.named_regexp={regexp}"],
        course.work,
        course.work / "home",
    )
    if done.returncode:
        raise RuntimeError(f"nbgrader zip_collect failed:\n{done.stderr[-3000:]}")
    return _mark_collected(course)


def collect_exchange(course: Course, exchange: Path) -> list[str]:
    """nbgrader's exchange: `nbgrader collect` from `exchange` (the instructor's Exchange.root)."""
    done = nbgrader(
        [
            "collect",
            course.assignment.name,
            "--update",
            f"--Exchange.root={exchange}",
            f"--CourseDirectory.course_id={course_id()}",
        ],
        course.work,
        course.work / "home",
    )
    if done.returncode:
        raise RuntimeError(f"nbgrader collect failed:\n{done.stderr[-3000:]}")
    return _mark_collected(course)


def _mark_collected(course: Course) -> list[str]:
    students = []
    for folder in sorted((course.root / "submitted").glob(f"*/{course.assignment.name}")):
        sid = folder.parent.name
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        (folder / ".collect.json").write_text(json.dumps({"files": files, "oversized": [], "id": sid}))
        students.append(sid)
    return students
