"""The student release: generated from the nbgrader source (`solutions/`) by nbgrader itself, in a throw-away
course directory, and written to `exercises/`. Also the nbgrader settings every grading step shares.

    python -m course.grading.release            # regenerate exercises/<assignment>/<notebook>, all of them

Two assignments: "transformers" (exercises 1-10, exercises.ipynb) and "capstone" (exercises 11-14, the
learner's own GPT, capstone.ipynb). Exercise numbers are unique across both, so a grade_id names its exercise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ASSIGNMENT = "transformers"
NOTEBOOK = "exercises.ipynb"
EXERCISES = tuple(
    f"ex{i:02d}" for i in range(1, 11)
)  # grade_ids are "<exercise>_<test>", e.g. "ex01_weights"
ASSIGNMENTS = {  # name: (notebook, its exercises)
    ASSIGNMENT: (NOTEBOOK, EXERCISES),
    "capstone": ("capstone.ipynb", tuple(f"ex{i:02d}" for i in range(11, 15))),
}
ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "solutions" / ASSIGNMENT / NOTEBOOK
RELEASE = ROOT / "exercises" / ASSIGNMENT / NOTEBOOK
CELL_TIMEOUT_S = 120  # per cell; importing torch alone can take 30 s on a cold machine
IGNORE_STDERR = r"[\s\S]"  # drop every stderr output before scoring: only an exception fails a test cell


ALL_EXERCISES = tuple(ex for _, exercises in ASSIGNMENTS.values() for ex in exercises)


def paths(assignment: str) -> tuple[Path, Path]:
    """(source, release) notebook of `assignment`."""
    if assignment not in ASSIGNMENTS:
        raise ValueError(f"unknown assignment {assignment!r}; expected one of {sorted(ASSIGNMENTS)}")
    notebook = ASSIGNMENTS[assignment][0]
    return ROOT / "solutions" / assignment / notebook, ROOT / "exercises" / assignment / notebook


def exercise_of(grade_id: str) -> str:
    """'ex03_split' -> 'ex03'. Raises ValueError for a grade_id outside the exercises."""
    prefix = grade_id.split("_", 1)[0]
    if prefix not in ALL_EXERCISES:
        raise ValueError(
            f"grade_id {grade_id!r} does not start with one of {ALL_EXERCISES[0]}..{ALL_EXERCISES[-1]}"
        )
    return prefix


def configure(c, root: str | os.PathLike) -> None:
    """Apply the course's nbgrader settings to a traitlets config `c` for a course rooted at `root`."""
    c.CourseDirectory.root = str(Path(root).resolve())
    c.CourseDirectory.course_id = "transformer-anatomy"
    c.Execute.timeout = CELL_TIMEOUT_S
    c.Execute.startup_timeout = CELL_TIMEOUT_S
    c.LimitOutput.max_lines = 200
    c.LimitOutput.max_traceback = 50
    c.OverwriteCells.add_missing_cells = True
    c.IgnorePattern.enabled = True
    c.IgnorePattern.pattern = IGNORE_STDERR
    c.ClearSolutions.enforce_metadata = True


def nbgrader_env(home: str | os.PathLike) -> dict[str, str]:
    """Environment for an nbgrader subprocess: private HOME and Jupyter config, this interpreter's bin/ on
    PATH (gradebook creation runs `alembic`), warnings silenced (the kernel inherits it)."""
    home = Path(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER_", "NBGRADER_"))}
    env.update(
        HOME=str(home),
        JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
        JUPYTER_DATA_DIR=str(home / ".jupyter-data"),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONWARNINGS="ignore",
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    )
    return env


def write_config(course_dir: str | os.PathLike) -> Path:
    """An nbgrader_config.py in `course_dir` that applies `configure` to that directory."""
    path = Path(course_dir) / "nbgrader_config.py"
    path.write_text(
        "from course.grading.release import configure\n\n"
        f"configure(get_config(), {str(Path(course_dir).resolve())!r})  # noqa: F821\n"
    )
    return path


def generate(
    out: str | os.PathLike | None = None,
    source: str | os.PathLike | None = None,
    assignment: str = ASSIGNMENT,
) -> Path:
    """Run `nbgrader generate_assignment` on `source` (default: solutions/<assignment>/) in a temporary
    course; write the released notebook to `out` (default: exercises/<assignment>/<notebook>); return its
    path."""
    default_source, default_out = paths(assignment)
    source, out = Path(source or default_source), Path(out or default_out)
    notebook = ASSIGNMENTS[assignment][0]
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        course = Path(tmp) / "course"
        (course / "source" / assignment).mkdir(parents=True)
        shutil.copy(source, course / "source" / assignment / notebook)
        write_config(course)
        done = subprocess.run(
            [sys.executable, "-m", "nbgrader", "generate_assignment", assignment, "--force"],
            cwd=course,
            env=nbgrader_env(tmp),
            capture_output=True,
            text=True,
            check=False,
        )
        released = course / "release" / assignment / notebook
        if done.returncode or not released.exists():
            raise RuntimeError(
                f"nbgrader generate_assignment failed ({done.returncode}):\n{done.stderr[-4000:]}"
            )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(released, out)
    return out


if __name__ == "__main__":
    for name in ASSIGNMENTS:
        print(generate(assignment=name))
