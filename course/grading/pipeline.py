"""`course grade`: the instructor pipeline around nbgrader, hardened against hostile and broken submissions.

    course grade SUBMISSIONS --out grades.csv   # all steps in a throw-away course
    (SUBMISSIONS/<student>/exercises.ipynb)
    course grade release                        # regenerate exercises/ from solutions/
    course grade collect SRC [--zip | --exchange DIR]   # into the course (default graders/)
    course grade autograde | feedback | export --out grades.csv

nbgrader keeps the course (generate, collect, gradebook, formgrader, export); `nbgrader autograde` is not
used.
Each submission's own cells run in a bubblewrap jail (`jail`, `runner`); the tests run in this trusted process
and call the learner's functions through the channel, getting plain data back (`grader`, `session`, `wire`).
Scores are written to the gradebook from here. The static scan (`tamper`) only adds review notes. Every
submission yields exactly one row: status graded | late | error | timeout | oom | flagged |
missing | invalid, a score (blank when nothing could be graded, never a silent 0), and a reason.
"""

from __future__ import annotations

import concurrent.futures
import csv
import datetime as dt
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from course.grading import check, grader, jail, release, session, wire

STATUSES = ("graded", "late", "error", "timeout", "oom", "flagged", "missing", "invalid")
COLUMNS = ["student_id", "status", "score", "max_score", "reason", *release.EXERCISES]
ASSIGNMENT, NOTEBOOK = release.ASSIGNMENT, release.NOTEBOOK
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
ZIP_REGEXP = r".*?(?:^|/)(?P<student_id>[A-Za-z0-9.@-]+)(?:_[^/]*)?[/_](?P<file_id>exercises\.ipynb)$"
SUBCOMMANDS = ("release", "collect", "autograde", "feedback", "export")


# --- the trusted course
# ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Course:
    """An nbgrader course rooted at `root`; our config and bookkeeping live in `root/work/`."""

    root: Path

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def db(self) -> Path:
        return self.root / "gradebook.db"

    def submitted(self, sid: str) -> Path:
        return self.root / "submitted" / sid / ASSIGNMENT

    def autograded(self, sid: str) -> Path:
        return self.root / "autograded" / sid / ASSIGNMENT / NOTEBOOK

    def feedback(self, sid: str) -> Path:
        return self.root / "feedback" / sid / ASSIGNMENT / NOTEBOOK.replace(".ipynb", ".html")

    def record(self, sid: str) -> Path:
        return self.work / "records" / f"{sid}.json"

    def log(self, sid: str) -> Path:
        return self.work / "logs" / f"{sid}.log"

    @property
    def release_nb(self) -> Path:
        return self.work / "release" / ASSIGNMENT / NOTEBOOK

    @property
    def pristine_db(self) -> Path:
        return self.work / "pristine.db"


def _config_text(root: Path, db: Path, extra: str = "") -> str:
    """An nbgrader_config.py with the course's settings (`release.configure`) written out as plain
    assignments, so
    that nbgrader never imports `course` (and torch) just to read its configuration."""
    from traitlets.config import Config

    c = Config()
    release.configure(c, root)
    c.CourseDirectory.db_url = f"sqlite:///{db}"
    c.CourseDirectory.source_directory, c.CourseDirectory.release_directory = "work/source", "work/release"
    lines = [
        f"c.{section}.{key} = {value!r}" for section, traits in c.items() for key, value in traits.items()
    ]
    return "c = get_config()  # noqa: F821\n" + "\n".join(lines) + "\n" + extra


def _nbgrader(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args],
        cwd=cwd,
        env=release.nbgrader_env(home),
        capture_output=True,
        text=True,
        check=False,
    )


def prepare(course: Course, source: Path, due: str | None = None) -> None:
    """Write the config, generate the assignment from `source` (solutions) and set the due date."""
    src = course.work / "source" / ASSIGNMENT / NOTEBOOK
    src.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, src)
    (course.work / "nbgrader_config.py").write_text(_config_text(course.root, course.db))
    done = _nbgrader(["generate_assignment", ASSIGNMENT, "--force"], course.work, course.work / "home")
    if done.returncode or not course.release_nb.exists():
        raise RuntimeError(
            f"nbgrader generate_assignment failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course.db}", course_id=_course_id()) as gb:
        when = dt.datetime.fromisoformat(due) if due else None
        gb.update_or_create_assignment(ASSIGNMENT, duedate=when)
    pristine = tempfile.mkdtemp(
        prefix="course-pristine-"
    )  # gradebook with the assignment and no student at all
    shutil.copyfile(course.db, Path(pristine) / "gradebook.db")
    with Gradebook(f"sqlite:///{Path(pristine) / 'gradebook.db'}", course_id=_course_id()) as gb:
        for student in gb.students:
            gb.remove_student(student.id)
    shutil.move(Path(pristine) / "gradebook.db", course.pristine_db)
    shutil.rmtree(pristine)


def _course_id() -> str:
    from traitlets.config import Config

    c = Config()
    release.configure(c, "/")
    return c.CourseDirectory.course_id


@dataclass
class Reference:
    """What the trusted side knows about the assignment, from the generated release."""

    nb: nbformat.NotebookNode
    tests: dict[str, float]  # grade_id -> points (autograded test cells)
    locked: dict[str, dict]  # grade_id -> release cell, for every locked cell
    setup_id: str | None  # the first locked code cell (harness.setup)

    @property
    def max_score(self) -> float:
        return sum(self.tests.values())

    @classmethod
    def load(cls, course: Course) -> Reference:
        return cls.read(course.release_nb)

    @classmethod
    def read(cls, path: Path) -> Reference:
        nb = nbformat.read(path, as_version=4)
        tests, locked, setup_id = {}, {}, None
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade") and not meta.get("solution"):
                tests[meta["grade_id"]] = float(meta.get("points", 0))
            if meta.get("locked"):
                locked[meta["grade_id"]] = cell
                if setup_id is None and cell.cell_type == "code" and not meta.get("grade"):
                    setup_id = meta["grade_id"]
        return cls(nb, tests, locked, setup_id)


# --- collect
# ---------------------------------------------------------------------------------------------------
def collect_folder(course: Course, submissions: Path, notebook_mb: float) -> list[str]:
    """Copy SUBMISSIONS/<student>/ into the course: the notebook(s) and timestamp.txt only, none over the size
    limit. What was left out is noted in `.collect.json` so that autograde can say why. Returns the student
    ids."""
    students = []
    for entry in sorted(submissions.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        sid = entry.name
        dest = course.submitted(sid) if STUDENT_ID.match(sid) else course.work / "bad-ids" / _bad_id(sid)
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


def _bad_id(name: str) -> str:
    """A unique, stable row id for a folder name that is not a student id (non-UTF-8 bytes included)."""
    raw = os.fsencode(name)
    return f"{_safe(name)[:48]}-{hashlib.sha256(raw).hexdigest()[:8]}"


def _shown(name: str) -> str:
    """A file or folder name as text that always encodes (undecodable bytes shown as \\xNN)."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def collect_zip(course: Course, archives: list[Path], regexp: str) -> list[str]:
    """LMS downloads: nbgrader zip_collect extracts the archives and files each notebook by `regexp`."""
    arch = course.root / "downloaded" / ASSIGNMENT / "archive"
    shutil.rmtree(arch.parent, ignore_errors=True)
    arch.mkdir(parents=True)
    for a in archives:
        for p in sorted(a.iterdir()) if a.is_dir() else [a]:
            shutil.copyfile(p, arch / p.name)
    done = _nbgrader(
        ["zip_collect", ASSIGNMENT, "--force", f"--FileNameCollectorPlugin.named_regexp={regexp}"],
        course.work,
        course.work / "home",
    )
    if done.returncode:
        raise RuntimeError(f"nbgrader zip_collect failed:\n{done.stderr[-3000:]}")
    return _mark_collected(course)


def collect_exchange(course: Course, exchange: Path) -> list[str]:
    """nbgrader's exchange: `nbgrader collect` from `exchange` (the instructor's Exchange.root)."""
    done = _nbgrader(
        [
            "collect",
            ASSIGNMENT,
            "--update",
            f"--Exchange.root={exchange}",
            f"--CourseDirectory.course_id={_course_id()}",
        ],
        course.work,
        course.work / "home",
    )
    if done.returncode:
        raise RuntimeError(f"nbgrader collect failed:\n{done.stderr[-3000:]}")
    return _mark_collected(course)


def _mark_collected(course: Course) -> list[str]:
    students = []
    for folder in sorted((course.root / "submitted").glob(f"*/{ASSIGNMENT}")):
        sid = folder.parent.name
        files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        (folder / ".collect.json").write_text(json.dumps({"files": files, "oversized": [], "id": sid}))
        students.append(sid)
    return students


# --- one submission
# --------------------------------------------------------------------------------------------
@dataclass
class Result:
    student_id: str
    status: str
    score: float | None = None
    reason: str = ""
    points: dict[str, float] = field(default_factory=dict)  # credited points per test grade_id
    timestamp: str | None = None
    wall_s: float = 0.0  # grading time of this submission (jail start-ups, cells, tests)
    cpu_s: float = 0.0
    messages: dict[str, str] = field(default_factory=dict)  # grade_id -> why the test failed ("" passed)


def sanitize(nb: nbformat.NotebookNode, ref: Reference) -> nbformat.NotebookNode:
    """The notebook as graded: locked cells restored from the release (type, metadata, position if deleted),
    duplicate or unknown grade_ids demoted to plain cells. Each cell keeps its number in the submission."""
    seen, cells = set(), []
    for number, cell in enumerate(nb.cells, 1):
        cell.metadata["course_grading"] = {"cell": number}  # its number in the submission, for reasons
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid is not None and (gid in seen or gid not in _known_ids(ref)):
            cell.metadata.pop("nbgrader")
            gid = None
        if gid in ref.locked:
            cell = nbformat.from_dict(dict(ref.locked[gid]))
        elif gid is not None:
            cell.metadata["nbgrader"] = _release_meta(ref, gid)
        seen.add(gid)
        cells.append(cell)
    nb.cells = _restore_missing(cells, ref)
    nb.metadata["kernelspec"] = ref.nb.metadata["kernelspec"]
    return nb


def learner_cells(nb: nbformat.NotebookNode, ref: Reference) -> list[tuple[int, str]]:
    """(number in the submission, source) of every code cell the learner could edit, in order."""
    return [
        (c.metadata.get("course_grading", {}).get("cell", 0), c.source)
        for c in nb.cells
        if c.cell_type == "code" and _gid(c) not in ref.locked
    ]


def _known_ids(ref: Reference) -> set[str]:
    return {
        c.metadata["nbgrader"]["grade_id"]
        for c in ref.nb.cells
        if "grade_id" in c.metadata.get("nbgrader", {})
    }


def _release_meta(ref: Reference, gid: str) -> dict:
    return next(
        dict(c.metadata["nbgrader"])
        for c in ref.nb.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == gid
    )


def _gid(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def _restore_missing(cells: list, ref: Reference) -> list:
    present = {_gid(c) for c in cells}
    for i, rcell in enumerate(ref.nb.cells):
        gid = _gid(rcell)
        if gid in ref.locked and gid not in present:
            before = [_gid(c) for c in ref.nb.cells[:i] if _gid(c) in present]
            at = max((j + 1 for j, c in enumerate(cells) if before and _gid(c) == before[-1]), default=0)
            cells.insert(at, nbformat.from_dict(dict(rcell)))
            present.add(gid)
    return cells


def grade_one(
    course: Course, sid: str, ref: Reference, source_nb, limits: jail.Limits
) -> tuple[Result, nbformat.NotebookNode | None]:
    """Grade one collected submission: its cells in the jail, the tests here. Returns the result and the
    graded
    notebook (the submission with the release's test cells and the trusted verdicts as their outputs)."""
    found = _read_submission(course, sid, ref, limits)
    if isinstance(found, Result):
        return found, None
    nb = sanitize(found, ref)
    cells = learner_cells(nb, ref)
    try:
        outcome = grader.grade(cells, source_nb, limits)
    except session.LearnerError as e:
        return Result(sid, "error", reason=f"{e} (a grader problem, not the submission's)"), None
    result = classify(sid, outcome, ref, limits, grader.review_notes(cells))
    result.timestamp = _timestamp(course.submitted(sid) / "timestamp.txt")
    return result, annotate(nb, outcome)


def annotate(nb: nbformat.NotebookNode, outcome: grader.Outcome) -> nbformat.NotebookNode:
    """Outputs of the graded notebook, all written here: the learner's own output per cell (truncated) and one
    verdict line per test cell."""
    verdicts = {v.grade_id: v for v in outcome.verdicts}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count, cell.outputs = None, []
        number = cell.metadata.get("course_grading", {}).get("cell")
        if _gid(cell) in verdicts:
            v = verdicts[_gid(cell)]
            text = f"{'✓' if not v.message else '✗'} {v.grade_id}: {v.earned:g} / {v.points:g}" + (
                f" — {v.message}" if v.message else ""
            )
            cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text + "\n")]
        elif number in outcome.cells:
            run = outcome.cells[number]
            text = (
                run.output
                + (f"{run.error}\n" if run.error else "")
                + (
                    {
                        "timeout": "[this cell went over its time limit and was skipped]\n",
                        "crashed": "[this cell ended the grading process and was skipped]\n",
                    }.get(run.fate, "")
                )
            )
            if text:
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
    return nb


def _read_submission(course: Course, sid: str, ref: Reference, limits: jail.Limits):
    """The submitted notebook, or a Result saying why there is none to grade."""
    folder = course.submitted(sid)
    note = json.loads((folder / ".collect.json").read_text()) if (folder / ".collect.json").exists() else {}
    files = note.get("files", sorted(p.name for p in folder.iterdir() if not p.name.startswith(".collect")))
    if NOTEBOOK in note.get("oversized", []):
        return Result(sid, "invalid", reason=f"{NOTEBOOK} is larger than the {limits.notebook_mb:g} MB limit")
    path = folder / NOTEBOOK
    if not path.is_file():
        if not [f for f in files if f != "timestamp.txt"]:
            return Result(sid, "missing", reason="the submission folder is empty")
        others = [wire.clean(f) for f in files if f.endswith(".ipynb")]
        return Result(
            sid,
            "invalid",
            reason=f"no {NOTEBOOK} in the submission folder"
            + (f" (found {', '.join(others[:3])}: notebooks must keep their name)" if others else ""),
        )
    if path.stat().st_size > limits.notebook_mb * 2**20:
        return Result(sid, "invalid", reason=f"{NOTEBOOK} is larger than the {limits.notebook_mb:g} MB limit")
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            cell.source = wire.clean(cell.source)
    except Exception as e:  # noqa: BLE001 - any unreadable notebook is invalid, whatever the parser says
        return Result(sid, "invalid", reason=f"{NOTEBOOK} is not a valid notebook ({type(e).__name__})")
    return nb


def _timestamp(path: Path) -> str | None:
    if not path.is_file() or path.stat().st_size > 200:
        return None
    try:
        from nbgrader.utils import parse_utc

        return parse_utc(path.read_text().strip()).isoformat()
    except Exception:  # noqa: BLE001 - an unparsable timestamp is ignored, as nbgrader does
        return None


def classify(
    sid: str, outcome: grader.Outcome, ref: Reference, limits: jail.Limits, notes: list[str]
) -> Result:
    """Status, credited points and reason of one graded submission. Points come from the trusted verdicts
    only;
    the status says what else the instructor should know (precedence: timeout, oom, flagged, graded)."""
    credited = {v.grade_id: v.earned for v in outcome.verdicts}
    reasons = []
    for what in outcome.timed_out:
        if what.startswith("cell"):
            reasons.append(f"{what} exceeded the {limits.cell_s:g} s per-cell limit and was skipped")
        elif what == "wall":
            reasons.append(f"grading exceeded the {limits.wall_s:g} s wall-clock limit")
        else:
            reasons.append(f"exercise {int(what[2:])} went over its {limits.exercise_s:g} s time budget")
    if outcome.memory:
        reasons.append(f"{outcome.memory[0]} exceeded the {limits.memory_mb} MB memory limit")
    reasons += [
        f"cell {n} ended the grading process (os._exit, a crash or a signal) and was skipped"
        for n in outcome.crashed
    ]
    if any(
        c.output.endswith("characters]\n") and "[output truncated at" in c.output
        for c in outcome.cells.values()
    ):
        reasons.append(f"output over {limits.output_bytes} bytes per cell was truncated")
    if notes:
        reasons.append(
            "review: " + "; ".join(notes[:5]) + (f" (+{len(notes) - 5} more)" if len(notes) > 5 else "")
        )
    status = "timeout" if outcome.timed_out else "oom" if outcome.memory else "flagged" if notes else "graded"
    result = Result(sid, status, sum(credited.values()), "; ".join(reasons), credited)
    result.messages = {v.grade_id: v.message for v in outcome.verdicts}
    result.wall_s = outcome.wall_s
    return result


# --- autograde / feedback / export
# -----------------------------------------------------------------------------
def autograde(course: Course, students: list[str], limits: jail.Limits, jobs: int = 0) -> list[Result]:
    """Grade `students` in parallel; write results to the real gradebook from this process only. Every step of
    a
    submission runs inside its own error boundary, so each one gets exactly one record."""
    jail.check(limits)
    ref = Reference.load(course)
    source_nb = nbformat.read(course.work / "source" / ASSIGNMENT / NOTEBOOK, as_version=4)
    with concurrent.futures.ThreadPoolExecutor(max(1, jobs or os.cpu_count() or 1)) as pool:
        futures = {
            sid: pool.submit(_grade_with_retry, course, sid, ref, source_nb, limits) for sid in students
        }
        results = []
        for sid, fut in futures.items():
            try:
                result, graded = fut.result()
            except Exception as e:  # noqa: BLE001 - one broken submission never stops the batch
                result, graded = Result(sid, "error", reason=f"grader failure: {type(e).__name__}"), None
                _log(course, sid, e)
            try:
                _store(course, ref, result, graded)
            except Exception as e:  # noqa: BLE001
                result, graded = (
                    Result(sid, "error", reason=f"grader failure while storing: {type(e).__name__}"),
                    None,
                )
                _store(course, ref, result, None)
            results.append(result)
    return results


def _grade_with_retry(course: Course, sid: str, ref: Reference, source_nb, limits: jail.Limits):
    """A failure of the grader itself (not of the submission) is logged and the submission graded once
    more."""
    try:
        return grade_one(course, sid, ref, source_nb, limits)
    except Exception as e:  # noqa: BLE001
        _log(course, sid, e)
        return grade_one(course, sid, ref, source_nb, limits)


def _log(course: Course, sid: str, error: BaseException) -> None:
    """The grader's own traceback, for the instructor (work/logs/<id>.log); never shown to the learner."""
    log = course.log(sid)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("".join(traceback.format_exception(error)))


def _store(course: Course, ref: Reference, result: Result, graded) -> None:
    """Trusted write-back: the record, the graded notebook, and the gradebook row (none when there is no
    score)."""
    rec = course.record(result.student_id)
    rec.parent.mkdir(parents=True, exist_ok=True)
    rec.write_text(json.dumps(asdict(result), indent=1))
    out = course.autograded(result.student_id)
    if out.parent.exists():
        shutil.rmtree(out.parent)
    if graded is not None:
        out.parent.mkdir(parents=True)
        nbformat.write(graded, out)
    if not STUDENT_ID.match(result.student_id):
        return
    with warnings.catch_warnings():  # SQLAlchemy's autoflush warnings from nbgrader's add_submission
        warnings.simplefilter("ignore")
        _store_grades(course, ref, result, rec)


def _store_grades(course: Course, ref: Reference, result: Result, rec: Path) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    url = f"sqlite:///{course.db}"
    with Gradebook(url, course_id=_course_id()) as gb:
        gb.update_or_create_student(result.student_id)
        try:
            gb.remove_submission(ASSIGNMENT, result.student_id)
        except MissingEntry:
            pass
    if result.score is None:
        return
    with Gradebook(url, course_id=_course_id()) as gb:
        stamp = dt.datetime.fromisoformat(result.timestamp) if result.timestamp else None
        gb.add_submission(ASSIGNMENT, result.student_id, timestamp=stamp)
        sub = gb.find_submission_notebook(NOTEBOOK[:-6], ASSIGNMENT, result.student_id)
        for grade in sub.grades:
            grade.auto_score = result.points.get(grade.name, 0.0) if grade.name in ref.tests else 0.0
            grade.manual_score, grade.needs_manual_grade = None, False
        gb.db.commit()
        late = gb.find_submission(ASSIGNMENT, result.student_id).total_seconds_late
    if late > 0:
        note = f"submitted {_duration(late)} after the due date"
        result.status = "late" if result.status == "graded" else result.status
        result.reason = "; ".join(filter(None, [result.reason, note]))
        rec.write_text(json.dumps(asdict(result), indent=1))


def _duration(seconds: float) -> str:
    h, m = divmod(int(seconds) // 60, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min" if m else f"{int(seconds)} s"


def feedback(course: Course, students: list[str]) -> list[Path]:
    """Feedback HTML per graded student, rendered here (nbconvert) from the trusted record and graded
    notebook."""
    ref, written = Reference.load(course), []
    for sid in students:
        graded, rec = course.autograded(sid), course.record(sid)
        if not graded.exists() or not rec.exists():
            continue
        try:
            result = Result(**json.loads(rec.read_text()))
            path = course.feedback(sid)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_feedback(nbformat.read(graded, as_version=4), ref, result))
            written.append(path)
        except Exception:  # noqa: BLE001 - a feedback page that cannot be rendered is left out, the row stays
            continue
    return written


def feedback_notebook(nb, ref: Reference, result: Result) -> nbformat.NotebookNode:
    """Score table first (per exercise, coloured), then the learner's cells with their own output, and each
    test as released (visible part only) with its verdict, diagnosis first. Never a hidden test."""
    rows_ = []
    for ex in release.EXERCISES:
        tests = [g for g in ref.tests if release.exercise_of(g) == ex]
        got, total = sum(result.points.get(g, 0.0) for g in tests), sum(ref.tests[g] for g in tests)
        colour = "#d4edda" if got == total else "#fff3cd" if got else "#f8d7da"
        rows_.append(f"<tr style='background:{colour}'><td>{ex}</td><td>{got:g} / {total:g}</td></tr>")
    head = (
        f"# {ASSIGNMENT}: feedback for {html.escape(result.student_id)}\n\n"
        f"**Status:** {result.status}. **Score:** {_fmt(result.score)} / {_fmt(ref.max_score)}.\n\n"
        + (f"{html.escape(result.reason)}\n\n" if result.reason else "")
        + "<table><tr><th>exercise</th><th>points</th></tr>"
        + "".join(rows_)
        + "</table>"
    )
    cells = [nbformat.v4.new_markdown_cell(head)]
    for cell in nb.cells:
        gid = _gid(cell)
        if gid in ref.tests:
            source = check.HIDDEN.sub("", ref.locked[gid].source)
            message = result.messages.get(gid, "")
            verdict = (
                f"✓ {gid}: {result.points.get(gid, 0):g} / {ref.tests[gid]:g}"
                if not message
                else f"✗ {gid}: {result.points.get(gid, 0):g} / {ref.tests[gid]:g} — {message}"
            )
            new = nbformat.v4.new_code_cell(source)
            new.outputs = [nbformat.v4.new_output("stream", name="stdout", text=verdict + "\n")]
            cells.append(new)
        elif gid in ref.locked:
            cells.append(nbformat.from_dict(dict(ref.locked[gid])))
        else:
            cells.append(cell)
    out = nbformat.v4.new_notebook(
        cells=cells, metadata={"kernelspec": ref.nb.metadata.get("kernelspec", {})}
    )
    return out


def render_feedback(nb, ref: Reference, result: Result) -> str:
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        template_name="lab", sanitize_html=True, exclude_input_prompt=True, exclude_output_prompt=True
    )
    body, _ = exporter.from_notebook_node(feedback_notebook(nb, ref, result))
    return body


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def rows(course: Course, ref: Reference, roster: list[str] = ()) -> list[dict]:
    """One CSV row per submission record, plus a `missing` row per rostered student without one."""
    out = {}
    for rec in sorted((course.work / "records").glob("*.json")):
        r = Result(**json.loads(rec.read_text()))
        per_ex = {ex: "" for ex in release.EXERCISES}
        if r.score is not None:
            for ex in release.EXERCISES:
                pts = [v for g, v in r.points.items() if release.exercise_of(g) == ex]
                per_ex[ex] = _fmt(sum(pts)) if pts else ""
        out[r.student_id] = {
            "student_id": r.student_id,
            "status": r.status,
            "score": _fmt(r.score),
            "max_score": _fmt(ref.max_score),
            "reason": r.reason,
            **per_ex,
        }
    for sid in roster:
        if sid not in out:
            out[sid] = {
                "student_id": sid,
                "status": "missing",
                "score": "",
                "max_score": _fmt(ref.max_score),
                "reason": "no submission",
                **{ex: "" for ex in release.EXERCISES},
            }
    return [out[k] for k in sorted(out)]


def export(course: Course, out: Path, roster: list[str] = ()) -> list[dict]:
    table = rows(course, Reference.load(course), roster)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    return table


# --- command line
# ----------------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument(
        "target",
        help="SUBMISSIONS folder (one sub-folder per student), or a step: " + " | ".join(SUBCOMMANDS),
    )
    parser.add_argument("source", nargs="?", help="collect: the folder or zip files to collect from")
    parser.add_argument("--out", type=Path, help="grades CSV to write (SUBMISSIONS and export)")
    parser.add_argument(
        "--course",
        type=Path,
        help="nbgrader course folder (steps: default graders/; SUBMISSIONS: a throw-away temporary folder)",
    )
    parser.add_argument(
        "--solutions", type=Path, default=release.SOURCE, help="source notebook with solutions"
    )
    parser.add_argument("--zip", action="store_true", help="collect: SOURCE holds LMS zip downloads")
    parser.add_argument(
        "--regexp", default=ZIP_REGEXP, help="collect --zip: file name -> student_id, file_id"
    )
    parser.add_argument("--exchange", type=Path, help="collect: from nbgrader's exchange rooted here")
    parser.add_argument(
        "--roster", type=Path, help="file with one student id per line (absent ones: missing)"
    )
    parser.add_argument("--due", help="due date, ISO 8601 (e.g. 2026-03-01T23:59:00+00:00); later = late")
    parser.add_argument("--student", action="append", help="autograde / feedback: only these students")
    parser.add_argument(
        "--jobs", type=int, default=0, help="submissions graded in parallel (default: CPU count)"
    )
    defaults = jail.Limits()
    parser.add_argument(
        "--wall-s", type=float, default=defaults.wall_s, help="wall-clock limit per submission"
    )
    parser.add_argument("--cell-s", type=int, default=defaults.cell_s, help="time limit per cell")
    parser.add_argument(
        "--exercise-s",
        type=float,
        default=defaults.exercise_s,
        help="time budget of one exercise's tests (all calls of the learner's functions)",
    )
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb, help="jail address-space limit")
    parser.add_argument(
        "--unsafe-no-sandbox",
        action="store_true",
        help="run learner code without bubblewrap (only where it cannot run; no isolation at all)",
    )
    parser.add_argument(
        "--output-bytes", type=int, default=defaults.output_bytes, help="outputs kept per cell"
    )
    parser.add_argument(
        "--notebook-mb", type=float, default=defaults.notebook_mb, help="largest notebook accepted"
    )


def _limits(args) -> jail.Limits:
    return jail.Limits(
        wall_s=args.wall_s,
        cell_s=args.cell_s,
        exercise_s=args.exercise_s,
        memory_mb=args.memory_mb,
        output_bytes=args.output_bytes,
        notebook_mb=args.notebook_mb,
        sandbox=not args.unsafe_no_sandbox,
    )


def _roster(args) -> list[str]:
    if not args.roster:
        return []
    return [line.strip() for line in args.roster.read_text().splitlines() if line.strip() and line[0] != "#"]


def grade_folder(submissions: Path, out: Path, course_dir: Path | None, args) -> list[dict]:
    """The contract: generate -> collect -> autograde -> feedback -> export, in a throw-away course by
    default."""
    tmp = None if course_dir else tempfile.mkdtemp(prefix="course-grade-")
    course = Course(Path(course_dir or tmp).resolve())
    try:
        course.root.mkdir(parents=True, exist_ok=True)
        for stale in ("records", "logs"):
            shutil.rmtree(course.work / stale, ignore_errors=True)
        prepare(course, args.solutions, args.due)
        students = collect_folder(course, submissions, args.notebook_mb)
        _invalid_ids(course)
        valid = [s for s in students if STUDENT_ID.match(s)]
        autograde(course, valid, _limits(args), args.jobs)
        feedback(course, valid)
        return export(course, out, _roster(args))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _invalid_ids(course: Course) -> None:
    for folder in sorted((course.work / "bad-ids").glob("*")):
        sid = folder.name
        result = Result(sid, "invalid", reason="the folder name is not a valid student id")
        course.record(sid).parent.mkdir(parents=True, exist_ok=True)
        course.record(sid).write_text(json.dumps(asdict(result)))


def run(args) -> int:
    try:
        return _run(args)
    except jail.JailUnavailable as e:
        print(
            f"course grade: {e}. Refusing to grade without isolation; pass --unsafe-no-sandbox to "
            "run learner "
            "code unjailed (only on a machine you do not mind the learners owning).",
            file=sys.stderr,
        )
        return 2


def _run(args) -> int:
    course = Course((args.course or release.ROOT / "graders").resolve())
    if args.target not in SUBCOMMANDS:
        if not args.out:
            print("course grade SUBMISSIONS needs --out grades.csv", file=sys.stderr)
            return 2
        table = grade_folder(Path(args.target), args.out, args.course, args)
        print(
            f"{len(table)} rows -> {args.out} ("
            + ", ".join(f"{s}: {n}" for s in STATUSES if (n := sum(r["status"] == s for r in table)))
            + ")"
        )
        return 0
    if args.target == "release":
        print(release.generate())
        return 0
    if args.target == "collect":
        course.work.mkdir(parents=True, exist_ok=True)
        prepare(course, args.solutions, args.due)
        if args.exchange:
            students = collect_exchange(course, args.exchange)
        elif args.zip:
            students = collect_zip(course, [Path(args.source)], args.regexp)
        else:
            students = collect_folder(course, Path(args.source), args.notebook_mb)
        print(f"collected {len(students)} submissions into {course.root / 'submitted'}")
        return 0
    if not course.release_nb.exists():
        prepare(course, args.solutions, args.due)
    students = args.student or sorted(p.name for p in (course.root / "submitted").glob("*") if p.is_dir())
    if args.target == "autograde":
        results = autograde(course, students, _limits(args), args.jobs)
        for r in results:
            print(f"{r.student_id:<20} {r.status:<8} {_fmt(r.score):>6}  {r.reason}")
    elif args.target == "feedback":
        print(f"{len(feedback(course, students))} feedback files in {course.root / 'feedback'}")
    elif args.target == "export":
        table = export(course, args.out or course.root / "grades.csv", _roster(args))
        print(f"{len(table)} rows -> {args.out or course.root / 'grades.csv'}")
    return 0
