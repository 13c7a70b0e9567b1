"""The trusted nbgrader course of `course grade`: which assignment is graded, where each file of the course
lives, and preparing it (config, `nbgrader generate_assignment`, the due date).

An assignment is a folder `solutions/<name>/` holding one source notebook; adding one makes it gradable with
`course grade … --assignment <name>`."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from course.grading import release


@dataclass(frozen=True)
class Assignment:
    """An nbgrader assignment: its name and its source notebook (with solutions). The notebook's file name is
    the one learners submit."""

    name: str = release.ASSIGNMENT
    source: Path = release.SOURCE

    @property
    def notebook(self) -> str:
        return self.source.name

    @property
    def release(self) -> Path:
        """Where the student version is written (exercises/<name>/<notebook>)."""
        return release.ROOT / "exercises" / self.name / self.notebook

    @classmethod
    def find(cls, name: str, *, source: Path | None = None) -> Assignment:
        """Assignment `name`: its source is `source`, or the one notebook in solutions/<name>/."""
        if source is not None:
            if not source.is_file():
                raise ValueError(f"--solutions {source}: no such notebook")
            return cls(name, source)
        folder = release.ROOT / "solutions" / name
        found = sorted(folder.glob("*.ipynb"))
        if len(found) != 1:
            known = sorted(p.name for p in (release.ROOT / "solutions").iterdir() if p.is_dir())
            raise ValueError(
                f"assignment {name!r}: expected one source notebook in {folder}, found {len(found)} "
                f"(assignments: {', '.join(known)})"
            )
        return cls(name, found[0])


@dataclass(frozen=True)
class Course:
    """An nbgrader course rooted at `root` grading `assignment`; our config and bookkeeping live in
    `root/work/`."""

    root: Path
    assignment: Assignment = field(default_factory=Assignment)

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def db(self) -> Path:
        return self.root / "gradebook.db"

    def submitted(self, sid: str) -> Path:
        return self.root / "submitted" / sid / self.assignment.name

    def autograded(self, sid: str) -> Path:
        return self.root / "autograded" / sid / self.assignment.name / self.assignment.notebook

    def feedback(self, sid: str) -> Path:
        a = self.assignment
        return self.root / "feedback" / sid / a.name / a.notebook.replace(".ipynb", ".html")

    def record(self, sid: str) -> Path:
        return self.work / "records" / f"{sid}.json"

    def log(self, sid: str) -> Path:
        return self.work / "logs" / f"{sid}.log"

    @property
    def source_nb(self) -> Path:
        return self.work / "source" / self.assignment.name / self.assignment.notebook

    @property
    def release_nb(self) -> Path:
        return self.work / "release" / self.assignment.name / self.assignment.notebook


def _config_text(root: Path, db: Path) -> str:
    """An nbgrader_config.py with the course's settings (`release.configure`) written out as plain
    assignments, so that nbgrader never imports `course` (and torch) just to read its configuration."""
    from traitlets.config import Config

    c = Config()
    release.configure(c, root)
    c.CourseDirectory.db_url = f"sqlite:///{db}"
    c.CourseDirectory.source_directory, c.CourseDirectory.release_directory = "work/source", "work/release"
    lines = [
        f"c.{section}.{key} = {value!r}" for section, traits in c.items() for key, value in traits.items()
    ]
    return "c = get_config()  # noqa: F821\n" + "\n".join(lines) + "\n"


def nbgrader(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=cwd,
        env=release.nbgrader_env(home),
        capture_output=True,
        text=True,
        check=False,
    )


def prepare(course: Course, due: str | None = None) -> None:
    """Write the config, generate the assignment from its source (solutions) and set the due date."""
    name = course.assignment.name
    course.source_nb.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(course.assignment.source, course.source_nb)
    (course.work / "nbgrader_config.py").write_text(_config_text(course.root, course.db))
    done = nbgrader(["generate_assignment", name, "--force"], course.work, course.work / "home")
    if done.returncode or not course.release_nb.exists():
        raise RuntimeError(
            f"nbgrader generate_assignment failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course.db}", course_id=course_id()) as gb:
        when = dt.datetime.fromisoformat(due) if due else None
        gb.update_or_create_assignment(name, duedate=when)


def course_id() -> str:
    from traitlets.config import Config

    c = Config()
    release.configure(c, "/")
    return c.CourseDirectory.course_id
