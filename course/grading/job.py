"""Grading one collected submission and storing its result: read it (or say why it cannot be graded),
sanitize, run its cells in the jail and the tests here (`grader`), classify the outcome into one status and
reason, write the graded notebook, and store the record and the gradebook row. `autograde` does it for many in
parallel, each submission in its own error boundary, a failure of the grader itself retried once."""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import json
import os
import shutil
import traceback
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from course.grading import collect, grader, jail, session, wire
from course.grading.course_dir import Course, course_id
from course.grading.sanitize import Reference, gid_of, learner_cells, sanitize

STATUSES = ("graded", "late", "error", "timeout", "oom", "flagged", "missing", "invalid")


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


def grade_one(
    course: Course, sid: str, ref: Reference, source_nb, limits: jail.Limits
) -> tuple[Result, nbformat.NotebookNode | None]:
    """Grade one collected submission: its cells in the jail, the tests here. Returns the result and the
    graded notebook (the submission with the release's test cells, the trusted verdicts as their
    outputs)."""
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
        if gid_of(cell) in verdicts:
            v = verdicts[gid_of(cell)]
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
    folder, notebook = course.submitted(sid), course.assignment.notebook
    note = json.loads((folder / ".collect.json").read_text()) if (folder / ".collect.json").exists() else {}
    files = note.get("files", sorted(p.name for p in folder.iterdir() if not p.name.startswith(".collect")))
    if notebook in note.get("oversized", []):
        return Result(sid, "invalid", reason=f"{notebook} is larger than the {limits.notebook_mb:g} MB limit")
    path = folder / notebook
    if not path.is_file():
        if not [f for f in files if f != "timestamp.txt"]:
            return Result(sid, "missing", reason="the submission folder is empty")
        others = [wire.clean(f) for f in files if f.endswith(".ipynb")]
        return Result(
            sid,
            "invalid",
            reason=f"no {notebook} in the submission folder"
            + (f" (found {', '.join(others[:3])}: notebooks must keep their name)" if others else ""),
        )
    if path.stat().st_size > limits.notebook_mb * 2**20:
        return Result(sid, "invalid", reason=f"{notebook} is larger than the {limits.notebook_mb:g} MB limit")
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            cell.source = wire.clean(cell.source)
    except Exception as e:  # noqa: BLE001 - any unreadable notebook is invalid, whatever the parser says
        return Result(sid, "invalid", reason=f"{notebook} is not a valid notebook ({type(e).__name__})")
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
    only; the status says what else the instructor should know (precedence: timeout, oom, flagged, graded)."""
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


def autograde(course: Course, students: list[str], limits: jail.Limits, jobs: int = 0) -> list[Result]:
    """Grade `students` in parallel; write results to the real gradebook from this process only. Every step
    of a submission runs inside its own error boundary, so each one gets exactly one record."""
    jail.check(limits)
    ref = Reference.read(course.release_nb)
    source_nb = nbformat.read(course.source_nb, as_version=4)
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
    if not collect.STUDENT_ID.match(result.student_id):
        return
    with warnings.catch_warnings():  # SQLAlchemy's autoflush warnings from nbgrader's add_submission
        warnings.simplefilter("ignore")
        _store_grades(course, ref, result, rec)


def _store_grades(course: Course, ref: Reference, result: Result, rec: Path) -> None:
    from nbgrader.api import Gradebook, MissingEntry

    url, name = f"sqlite:///{course.db}", course.assignment.name
    with Gradebook(url, course_id=course_id()) as gb:
        gb.update_or_create_student(result.student_id)
        try:
            gb.remove_submission(name, result.student_id)
        except MissingEntry:
            pass
    if result.score is None:
        return
    with Gradebook(url, course_id=course_id()) as gb:
        stamp = dt.datetime.fromisoformat(result.timestamp) if result.timestamp else None
        gb.add_submission(name, result.student_id, timestamp=stamp)
        sub = gb.find_submission_notebook(course.assignment.notebook[:-6], name, result.student_id)
        for grade in sub.grades:
            grade.auto_score = result.points.get(grade.name, 0.0) if grade.name in ref.tests else 0.0
            grade.manual_score, grade.needs_manual_grade = None, False
        gb.db.commit()
        late = gb.find_submission(name, result.student_id).total_seconds_late
    if late > 0:
        note = f"submitted {_duration(late)} after the due date"
        result.status = "late" if result.status == "graded" else result.status
        result.reason = "; ".join(filter(None, [result.reason, note]))
        rec.write_text(json.dumps(asdict(result), indent=1))


def _duration(seconds: float) -> str:
    h, m = divmod(int(seconds) // 60, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min" if m else f"{int(seconds)} s"
