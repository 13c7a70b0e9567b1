"""`course hub`: the class on a JupyterHub (`make hub` runs `setup`, then the hub).

    course hub setup --roster roster.txt [--hub DIR]   # root: users, homes, exchange, per-role config
    course hub release                                 # instructor: the assignment -> the exchange
    course hub return-feedback                         # instructor, after `course grade feedback`
    course hub remove --roster roster.txt              # root: delete the roster's users and their homes

The instructor grades in between with
`course grade collect --exchange $COURSE_HUB_EXCHANGE --course ~/course --solutions S`, then
`course grade autograde | feedback | export` with the same `--course` and `--solutions` (S: the instructor's
copy, ~/course/solutions/transformers/exercises.ipynb; the repository's solutions/ is private to root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from course.grading import release
from course.hub import classroom

STEPS = ("setup", "release", "return-feedback", "remove")
DEFAULT_HUB = Path("/srv/transformer-anatomy")


def add_arguments(parser) -> None:
    parser.add_argument(
        "step",
        choices=STEPS,
        help="setup: users, exchange and configs from the roster; release: the assignment to the exchange; "
        "return-feedback: graded feedback back to the learners; remove: the roster's users and homes",
    )
    parser.add_argument("--roster", type=Path, help="setup / remove: one 'name' or 'name instructor' a line")
    parser.add_argument("--hub", type=Path, default=DEFAULT_HUB, help="setup: the hub's folder")
    parser.add_argument("--home-base", type=Path, help="setup: folder of the new users' homes (useradd -b)")
    parser.add_argument(
        "--exchange",
        type=Path,
        default=os.environ.get("COURSE_HUB_EXCHANGE"),
        help="release / return-feedback: nbgrader's exchange (default: $COURSE_HUB_EXCHANGE, set on the hub)",
    )
    parser.add_argument(
        "--course",
        type=Path,
        default=Path.home() / classroom.COURSE_DIR,
        help="return-feedback: the `course grade --course` folder (default ~/course)",
    )


def nbgrader(args: list[str], exchange: Path) -> None:
    """Run an nbgrader exchange step with every setting on its command line (no config file is read)."""
    with tempfile.TemporaryDirectory() as home:
        course = ["--CourseDirectory.course_id=" + classroom.course_id(), f"--Exchange.root={exchange}"]
        done = subprocess.run(
            [sys.executable, "-m", "nbgrader", *args, *course],
            cwd=home,
            env=release.nbgrader_env(home),
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode:
        raise RuntimeError(f"nbgrader {args[0]} failed:\n{done.stderr[-3000:]}")


def publish(exchange: Path) -> None:
    """The committed release (exercises/, generated from solutions/ by nbgrader) -> the exchange."""
    root, folder = release.RELEASE.parents[2], release.RELEASE.parents[1].name
    nbgrader(
        [
            "release_assignment",
            release.ASSIGNMENT,
            "--force",
            f"--CourseDirectory.root={root}",
            f"--CourseDirectory.release_directory={folder}",
        ],
        exchange,
    )


def return_feedback(course: Path, exchange: Path) -> list[str]:
    """Each graded learner's feedback page -> the exchange, under the hash of their own submission (nbgrader's
    release_feedback: only that learner's `Fetch Feedback` finds it). Returns the learners served."""
    served = []
    for page in sorted((course / "feedback").glob(f"*/{release.ASSIGNMENT}/*.html")):
        sid = page.parents[1].name
        submitted = course / "submitted" / sid / release.ASSIGNMENT
        for name in ("timestamp.txt", "submission_secret.txt"):  # what nbgrader hashes the page's name from
            shutil.copyfile(submitted / name, page.parent / name)
        served.append(sid)
    nbgrader(["release_feedback", release.ASSIGNMENT, f"--CourseDirectory.root={course}"], exchange)
    return served


def run(args) -> int:
    if args.step in ("setup", "remove") and not args.roster:
        print(f"course hub {args.step} needs --roster FILE", file=sys.stderr)
        return 2
    if args.step in ("release", "return-feedback") and not args.exchange:
        print(f"course hub {args.step} needs --exchange DIR (or COURSE_HUB_EXCHANGE)", file=sys.stderr)
        return 2
    try:
        if args.step == "setup":
            created = classroom.setup(args.roster, args.hub, home_base=args.home_base)
            print(f"hub folder {args.hub}; users created: {' '.join(m.name for m in created) or 'none'}")
        elif args.step == "remove":
            classroom.remove(args.roster)
        elif args.step == "release":
            publish(args.exchange)
            print(f"released {release.ASSIGNMENT} to {args.exchange}")
        else:
            served = return_feedback(args.course, args.exchange)
            print(f"feedback released for {len(served)} learners: {' '.join(served)}")
    except (ValueError, RuntimeError, FileNotFoundError, subprocess.CalledProcessError) as e:
        print(f"course hub {args.step}: {e}", file=sys.stderr)
        return 1
    return 0
