"""`course grade`: the instructor pipeline around nbgrader, hardened against hostile and broken submissions.

    course grade SUBMISSIONS --out grades.csv   # every step in a throw-away course (SUBMISSIONS/<student>/)
    course grade release                        # regenerate exercises/ from solutions/
    course grade collect SRC [--zip | --exchange DIR]   # into the course (default graders/)
    course grade autograde | feedback | export --out grades.csv

    … --assignment NAME                         # any step: the assignment in solutions/NAME/ (transformers)

nbgrader keeps the course (generate, collect, gradebook, formgrader, export); `nbgrader autograde` is not
used. One module per step: the course folder (`course_dir`), `collect`, `sanitize`, grading one
submission (`job`), feedback and the CSV (`report`), and this command line. Each submission's own cells run in
a bubblewrap jail (`jail`, `runner`); the tests run in this trusted process and call the learner's functions
through the channel, getting plain data back (`grader`, `session`, `wire`).
Scores are written to the gradebook from here. The static scan (`tamper`) only adds review notes. Every
submission yields exactly one row: status graded | late | error | timeout | oom | flagged |
missing | invalid, a score (blank when nothing could be graded, never a silent 0), and a reason.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from course.grading import collect, jail, job, release, report
from course.grading.course_dir import Assignment, Course, prepare

SUBCOMMANDS = ("release", "collect", "autograde", "feedback", "export")


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
        "--assignment",
        default=release.ASSIGNMENT,
        help=f"the assignment graded: a folder of solutions/ (default {release.ASSIGNMENT})",
    )
    parser.add_argument(
        "--solutions",
        type=Path,
        help="source notebook with solutions (default: the one in solutions/ASSIGNMENT/); its file name is "
        "the notebook learners submit",
    )
    parser.add_argument("--zip", action="store_true", help="collect: SOURCE holds LMS zip downloads")
    parser.add_argument(
        "--regexp", help="collect --zip: file name -> student_id, file_id (default: collect.zip_regexp)"
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
    course = Course(Path(course_dir or tmp).resolve(), _assignment(args))
    try:
        course.root.mkdir(parents=True, exist_ok=True)
        for stale in ("records", "logs"):
            shutil.rmtree(course.work / stale, ignore_errors=True)
        prepare(course, args.due)
        students = collect.collect_folder(course, submissions, args.notebook_mb)
        _invalid_ids(course)
        valid = [s for s in students if collect.STUDENT_ID.match(s)]
        job.autograde(course, valid, _limits(args), args.jobs)
        report.feedback(course, valid)
        return report.export(course, out, _roster(args))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _invalid_ids(course: Course) -> None:
    for folder in sorted((course.work / "bad-ids").glob("*")):
        sid = folder.name
        result = job.Result(sid, "invalid", reason="the folder name is not a valid student id")
        course.record(sid).parent.mkdir(parents=True, exist_ok=True)
        course.record(sid).write_text(json.dumps(asdict(result)))


def _assignment(args) -> Assignment:
    return Assignment.find(args.assignment, source=args.solutions)


def run(args) -> int:
    try:
        return _run(args)
    except ValueError as e:  # a bad --assignment or --solutions
        print(f"course grade: {e}", file=sys.stderr)
        return 2
    except jail.JailUnavailable as e:
        print(
            f"course grade: {e}. Refusing to grade without isolation; pass --unsafe-no-sandbox to run "
            "learner code unjailed (only on a machine you do not mind the learners owning).",
            file=sys.stderr,
        )
        return 2


def _run(args) -> int:
    course = Course((args.course or release.ROOT / "graders").resolve(), _assignment(args))
    if args.target not in SUBCOMMANDS:
        if not args.out:
            print("course grade SUBMISSIONS needs --out grades.csv", file=sys.stderr)
            return 2
        table = grade_folder(Path(args.target), args.out, args.course, args)
        print(
            f"{len(table)} rows -> {args.out} ("
            + ", ".join(f"{s}: {n}" for s in job.STATUSES if (n := sum(r["status"] == s for r in table)))
            + ")"
        )
        return 0
    if args.target == "release":
        print(release.generate(course.assignment.release, course.assignment.source, course.assignment.name))
        return 0
    if args.target == "collect":
        course.work.mkdir(parents=True, exist_ok=True)
        prepare(course, args.due)
        if args.exchange:
            students = collect.collect_exchange(course, args.exchange)
        elif args.zip:
            students = collect.collect_zip(course, [Path(args.source)], args.regexp)
        else:
            students = collect.collect_folder(course, Path(args.source), args.notebook_mb)
        print(f"collected {len(students)} submissions into {course.root / 'submitted'}")
        return 0
    if not course.release_nb.exists():
        prepare(course, args.due)
    students = args.student or sorted(p.name for p in (course.root / "submitted").glob("*") if p.is_dir())
    if args.target == "autograde":
        results = job.autograde(course, students, _limits(args), args.jobs)
        for r in results:
            print(f"{r.student_id:<20} {r.status:<8} {report.fmt(r.score):>6}  {r.reason}")
    elif args.target == "feedback":
        print(f"{len(report.feedback(course, students))} feedback files in {course.root / 'feedback'}")
    elif args.target == "export":
        table = report.export(course, args.out or course.root / "grades.csv", _roster(args))
        print(f"{len(table)} rows -> {args.out or course.root / 'grades.csv'}")
    return 0
