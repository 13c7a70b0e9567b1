"""`course grade`: the instructor pipeline around nbgrader, hardened against hostile and broken submissions.

    course grade SUBMISSIONS --out grades.csv   # all steps in a throw-away course (SUBMISSIONS/<student>/exercises.ipynb)
    course grade release                        # regenerate exercises/ from solutions/
    course grade collect SRC [--zip | --exchange DIR]   # into the course (default graders/)
    course grade autograde | feedback | export --out grades.csv

Each submission is graded by `nbgrader autograde` in its own jailed process (`sandbox`), in a private course holding
only a pristine copy of the gradebook and that one notebook; results are read back and written to the real
gradebook by this (trusted) process only. Learner cells are scanned and the notebook gets integrity probes
(`tamper`). Every submission yields exactly one row: status graded | late | error | timeout | oom | flagged |
missing | invalid, a score (blank when nothing could be graded, never a silent 0), and a reason.
"""
from __future__ import annotations

import concurrent.futures
import csv
import datetime as dt
import html
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from course.grading import release, sandbox, tamper

STATUSES = ("graded", "late", "error", "timeout", "oom", "flagged", "missing", "invalid")
COLUMNS = ["student_id", "status", "score", "max_score", "reason", *release.EXERCISES]
ASSIGNMENT, NOTEBOOK = release.ASSIGNMENT, release.NOTEBOOK
STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
ZIP_REGEXP = r".*?(?:^|/)(?P<student_id>[A-Za-z0-9.@-]+)(?:_[^/]*)?[/_](?P<file_id>exercises\.ipynb)$"
OOM_SIGNS = ("MemoryError", "can't allocate memory", "Cannot allocate memory", "bad_alloc", "out of memory")
TRUNCATED = sandbox.TRUNCATED_NOTE
SUBCOMMANDS = ("release", "collect", "autograde", "feedback", "export")


# --- the trusted course ----------------------------------------------------------------------------------------
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
    """An nbgrader_config.py with the course's settings (`release.configure`) written out as plain assignments, so
    that nbgrader never imports `course` (and torch) just to read its configuration."""
    from traitlets.config import Config
    c = Config()
    release.configure(c, root)
    c.CourseDirectory.db_url = f"sqlite:///{db}"
    c.CourseDirectory.source_directory, c.CourseDirectory.release_directory = "work/source", "work/release"
    lines = [f"c.{section}.{key} = {value!r}" for section, traits in c.items() for key, value in traits.items()]
    return "c = get_config()  # noqa: F821\n" + "\n".join(lines) + "\n" + extra


def _nbgrader(args: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=release.nbgrader_env(home),
                          capture_output=True, text=True, check=False)


def prepare(course: Course, source: Path, due: str | None = None) -> None:
    """Write the config, generate the assignment from `source` (solutions) and set the due date."""
    src = course.work / "source" / ASSIGNMENT / NOTEBOOK
    src.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, src)
    (course.work / "nbgrader_config.py").write_text(_config_text(course.root, course.db))
    done = _nbgrader(["generate_assignment", ASSIGNMENT, "--force"], course.work, course.work / "home")
    if done.returncode or not course.release_nb.exists():
        raise RuntimeError(f"nbgrader generate_assignment failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    from nbgrader.api import Gradebook
    with Gradebook(f"sqlite:///{course.db}", course_id=_course_id()) as gb:
        when = dt.datetime.fromisoformat(due) if due else None
        gb.update_or_create_assignment(ASSIGNMENT, duedate=when)
    pristine = tempfile.mkdtemp(prefix="course-pristine-")  # gradebook with the assignment and no student at all
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
    tests: dict[str, float]          # grade_id -> points (autograded test cells)
    locked: dict[str, dict]          # grade_id -> release cell, for every locked cell
    setup_id: str | None             # the first locked code cell (harness.setup)

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


# --- collect ---------------------------------------------------------------------------------------------------
def collect_folder(course: Course, submissions: Path, notebook_mb: float) -> list[str]:
    """Copy SUBMISSIONS/<student>/ into the course: the notebook(s) and timestamp.txt only, none over the size
    limit. What was left out is noted in `.collect.json` so that autograde can say why. Returns the student ids."""
    students = []
    for entry in sorted(submissions.iterdir()):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        sid = entry.name
        dest = course.submitted(sid) if STUDENT_ID.match(sid) else course.work / "bad-ids" / _safe(sid)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        files = sorted(p for p in entry.rglob("*") if p.is_file() or p.is_symlink())
        note = {"files": [str(p.relative_to(entry)) for p in files], "oversized": [], "id": sid}
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


def collect_zip(course: Course, archives: list[Path], regexp: str) -> list[str]:
    """LMS downloads: nbgrader zip_collect extracts the archives and files each notebook by `regexp`."""
    arch = course.root / "downloaded" / ASSIGNMENT / "archive"
    shutil.rmtree(arch.parent, ignore_errors=True)
    arch.mkdir(parents=True)
    for a in archives:
        for p in sorted(a.iterdir()) if a.is_dir() else [a]:
            shutil.copyfile(p, arch / p.name)
    done = _nbgrader(["zip_collect", ASSIGNMENT, "--force", f"--FileNameCollectorPlugin.named_regexp={regexp}"],
                     course.work, course.work / "home")
    if done.returncode:
        raise RuntimeError(f"nbgrader zip_collect failed:\n{done.stderr[-3000:]}")
    return _mark_collected(course)


def collect_exchange(course: Course, exchange: Path) -> list[str]:
    """nbgrader's exchange: `nbgrader collect` from `exchange` (the instructor's Exchange.root)."""
    done = _nbgrader(["collect", ASSIGNMENT, "--update", f"--Exchange.root={exchange}",
                      f"--CourseDirectory.course_id={_course_id()}"], course.work, course.work / "home")
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


# --- one submission --------------------------------------------------------------------------------------------
@dataclass
class Result:
    student_id: str
    status: str
    score: float | None = None
    reason: str = ""
    points: dict[str, float] = field(default_factory=dict)   # credited points per test grade_id
    timestamp: str | None = None
    wall_s: float = 0.0       # grading time of this submission (jail, nbgrader, kernel)
    cpu_s: float = 0.0


def _read_submission(course: Course, sid: str, ref: Reference, limits: sandbox.Limits):
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
        others = [f for f in files if f.endswith(".ipynb")]
        return Result(sid, "invalid", reason=f"no {NOTEBOOK} in the submission folder" +
                      (f" (found {', '.join(others[:3])}: notebooks must keep their name)" if others else ""))
    if path.stat().st_size > limits.notebook_mb * 2**20:
        return Result(sid, "invalid", reason=f"{NOTEBOOK} is larger than the {limits.notebook_mb:g} MB limit")
    try:
        nb = nbformat.reads(path.read_text(encoding="utf-8"), as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # noqa: BLE001 - any unreadable notebook is invalid, whatever the parser says
        return Result(sid, "invalid", reason=f"{NOTEBOOK} is not a valid notebook ({type(e).__name__})")
    return nb


def sanitize(nb: nbformat.NotebookNode, ref: Reference, nonce: str) -> nbformat.NotebookNode:
    """The notebook actually graded: locked cells restored from the release (type, metadata, position if deleted),
    duplicate or unknown grade_ids demoted to plain cells, the setup cell first, learner cells tagged with their
    scan findings, and an integrity probe before every test cell and at the end."""
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
    cells = _restore_missing(cells, ref)
    cells = _setup_first(cells, ref)
    out = []
    for cell in cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and not meta.get("locked"):
            cell.metadata.setdefault("course_grading", {})["findings"] = tamper.scan_cell(cell.source)
        if meta.get("grade_id") in ref.tests:
            out.append(_probe_cell(nonce))
        out.append(cell)
    out.append(_probe_cell(nonce))
    nb.cells = out
    nb.metadata["kernelspec"] = ref.nb.metadata["kernelspec"]
    return nb


def _known_ids(ref: Reference) -> set[str]:
    return {c.metadata["nbgrader"]["grade_id"] for c in ref.nb.cells if "grade_id" in c.metadata.get("nbgrader", {})}


def _release_meta(ref: Reference, gid: str) -> dict:
    return next(dict(c.metadata["nbgrader"]) for c in ref.nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


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


def _setup_first(cells: list, ref: Reference) -> list:
    setup = next((c for c in cells if _gid(c) == ref.setup_id), None)
    if setup is None:
        return cells
    rest = [c for c in cells if c is not setup]
    first_code = next((j for j, c in enumerate(rest) if c.cell_type == "code"), len(rest))
    return rest[:first_code] + [setup] + rest[first_code:]


def _probe_cell(nonce: str):
    return nbformat.v4.new_code_cell(tamper.probe_source(nonce), metadata={"course_grading": {"probe": True}})


def _job_config(limits: sandbox.Limits) -> str:
    return ("import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('course_grading_sandbox', {sandbox.SCRIPT!r})\n"
            "sandbox = sys.modules['course_grading_sandbox'] = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(sandbox)\n"
            f"c.Execute.timeout = c.BoundedExecute.timeout = {int(limits.cell_s)}\n"
            f"c.BoundedExecute.output_bytes = {int(limits.output_bytes)}\n"
            "from nbgrader.converters import Autograde\n"
            "c.Autograde.autograde_preprocessors = [sandbox.BoundedExecute if p.__name__ == 'Execute' else p\n"
            "    for p in Autograde.class_traits()['autograde_preprocessors'].default()]\n")


def _kernelspec(scratch: Path, private: Path, limits: sandbox.Limits) -> None:
    spec = scratch / "share" / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [sys.executable, sandbox.SCRIPT, "kernel", "--keep", str(scratch),
            "--hide", str(private / "secret"), "--hide", str(private / "course" / "submitted"),
            "--memory-mb", str(limits.memory_mb), "--file-mb", str(limits.file_mb), "--",
            sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3 (graded)",
                                                  "language": "python"}))


def grade_one(course: Course, sid: str, ref: Reference, limits: sandbox.Limits, jobs: Path,
              hide: list[Path]) -> tuple[Result, nbformat.NotebookNode | None]:
    """Grade one collected submission in a private jailed course; returns the result and the graded notebook."""
    found = _read_submission(course, sid, ref, limits)
    if isinstance(found, Result):
        return found, None
    nonce = secrets.token_hex(16)
    private = Path(tempfile.mkdtemp(prefix=f"{sid}-", dir=jobs))
    root, secret, scratch = private / "course", private / "secret", private / "scratch"
    sub = root / "submitted" / sid / ASSIGNMENT
    for d in (sub, secret, scratch / "home", scratch / "runtime", scratch / "site", scratch / "tmp"):
        d.mkdir(parents=True)
    nbformat.write(sanitize(found, ref, nonce), sub / NOTEBOOK)
    stamp = course.submitted(sid) / "timestamp.txt"
    if stamp.is_file() and stamp.stat().st_size < 200:
        shutil.copyfile(stamp, sub / "timestamp.txt")
    shutil.copyfile(course.pristine_db, secret / "gradebook.db")
    (root / "nbgrader_config.py").write_text(_config_text(root, secret / "gradebook.db", _job_config(limits)))
    _kernelspec(scratch, private, limits)
    (scratch / "site" / "sitecustomize.py").write_text(sandbox.SOCKET_GUARD)
    env = release.nbgrader_env(scratch / "home")
    env.update(JUPYTER_PATH=str(scratch / "share" / "jupyter"), JUPYTER_RUNTIME_DIR=str(scratch / "runtime"),
               TMPDIR=str(scratch / "tmp"),  # nbclient writes the kernel's connection file there
               IPYTHONDIR=str(scratch / "home" / ".ipython"), MPLCONFIGDIR=str(scratch / "home"),
               PYTHONPATH=os.pathsep.join([str(scratch / "site"), env["PYTHONPATH"]]), MALLOC_ARENA_MAX="2",
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", MPLBACKEND="Agg")
    log = course.log(sid)
    log.parent.mkdir(parents=True, exist_ok=True)
    run = sandbox.run_jailed([sys.executable, "-m", "nbgrader", "autograde", ASSIGNMENT, "--student", sid, "--force"],
                             cwd=root, env=env, keep=[private], hide=hide, wall_s=limits.wall_s, log=log)
    try:
        graded = _safe_read_nb(root / "autograded" / sid / ASSIGNMENT / NOTEBOOK, limits)
        scores = _private_scores(secret / "gradebook.db", sid) if graded is not None else None
        result = classify(sid, run, graded, scores, ref, nonce, log.read_text(errors="replace"), limits)
        result.timestamp = _timestamp(sub / "timestamp.txt")
        result.wall_s, result.cpu_s = round(run.wall_s, 2), round(run.cpu_s, 2)
        return result, graded
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _safe_read_nb(path: Path, limits: sandbox.Limits):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(int(limits.notebook_mb * 2**20) + 64 * limits.output_bytes + 2**20)
    try:
        return nbformat.reads(data.decode("utf-8"), as_version=4)
    except Exception:  # noqa: BLE001
        return None


def _private_scores(db: Path, sid: str) -> dict[str, float | None] | None:
    from nbgrader.api import Gradebook, MissingEntry
    try:
        with Gradebook(f"sqlite:///{db}", course_id=_course_id()) as gb:
            nb = gb.find_submission_notebook(NOTEBOOK[:-6], ASSIGNMENT, sid)
            return {g.name: g.auto_score for g in nb.grades}
    except (MissingEntry, Exception):  # noqa: BLE001 - no row: nbgrader failed before saving
        return None


def _timestamp(path: Path) -> str | None:
    if not path.is_file():
        return None
    try:
        from nbgrader.utils import parse_utc
        return parse_utc(path.read_text().strip()).isoformat()
    except Exception:  # noqa: BLE001 - an unparsable timestamp is ignored, as nbgrader does
        return None


def classify(sid: str, run: sandbox.Run, graded, scores, ref: Reference, nonce: str, log: str,
             limits: sandbox.Limits) -> Result:
    """Status, credited points and reason of one graded run (the order of checks is the status precedence)."""
    if run.timed_out:
        return Result(sid, "timeout", reason=f"grading exceeded the {limits.wall_s:g} s wall-clock limit")
    if graded is None or scores is None:
        return Result(sid, "error", reason=_failure(log, run.returncode))
    missing = [g for g in ref.tests if scores.get(g) is None]
    if missing:
        return Result(sid, "error", reason=f"test cells could not be scored: {', '.join(missing)}")
    if "DeadKernelError" in log or "Kernel died" in log or "kernel died" in log.lower():
        return Result(sid, "error", reason="the kernel died while grading (os._exit, a crash or a signal)")
    credited, findings = _credit(graded, scores, ref, nonce)
    score = sum(credited.values())
    notes = []
    outputs = [(i, o) for i, c in enumerate(graded.cells) if c.cell_type == "code" for o in c.get("outputs", [])]
    timeouts = sorted({i for i, o in outputs if o.get("ename") == "CellTimeoutError"})
    ooms = sorted({i for i, o in outputs if o.get("output_type") == "error" and
                   any(s in f"{o.get('ename')}: {o.get('evalue')}" for s in OOM_SIGNS)})
    if any(TRUNCATED in str(o.get("text", "")) for _, o in outputs):
        notes.append(f"output over {limits.output_bytes} bytes per cell was truncated")
    status = "graded"
    if timeouts:
        status, reason = "timeout", f"cell {timeouts[0]} exceeded the {limits.cell_s} s per-cell limit"
    elif ooms:
        status, reason = "oom", f"cell {ooms[0]} exceeded the {limits.memory_mb} MB memory limit"
    elif findings:
        status, reason = "flagged", "; ".join(findings[:5]) + (f" (+{len(findings) - 5} more)" if len(findings) > 5 else "")
    else:
        reason = ""
    return Result(sid, status, score, "; ".join(filter(None, [reason, *notes])), credited)


def _credit(graded, scores: dict, ref: Reference, nonce: str) -> tuple[dict[str, float], list[str]]:
    """Points per test, withholding every test that ran after a flagged learner cell or around a failed probe."""
    findings, static_bad, probes, tests = [], None, [], []
    for i, cell in enumerate(graded.cells):
        mark = cell.metadata.get("course_grading", {})
        if mark.get("probe"):
            report = tamper.read_probe(cell.get("outputs", []), nonce)
            bad = report is None or bool(report)
            probes.append((i, bad))
            if bad:
                findings += [f"integrity: {p}" for p in report] if report else ["integrity probe did not report"]
        elif mark.get("findings"):
            findings += [f"cell {mark.get('cell', '?')} {f}" for f in mark["findings"]]
            static_bad = i if static_bad is None else static_bad
        elif _gid(cell) in ref.tests:
            tests.append((i, _gid(cell)))
    credited = {}
    for i, gid in tests:
        next_probe = next((j for j, _ in probes if j > i), len(graded.cells))
        tampered = (static_bad is not None and static_bad < i) or any(bad for j, bad in probes if j <= next_probe)
        credited[gid] = 0.0 if tampered else float(scores[gid])
    return credited, list(dict.fromkeys(findings))


def _failure(log: str, rc: int | None) -> str:
    """A reason from nbgrader's log, in fixed words (the log itself may quote hidden tests)."""
    known = [(sandbox.JAIL_FAILED, "the grading jail could not be set up (a grader problem, not the submission's)"),
             ("DeadKernelError", "the kernel died while grading (os._exit, a crash or a signal)"),
             ("Kernel died", "the kernel died while grading (os._exit, a crash or a signal)"),
             ("UnresponsiveKernelError", "the kernel stopped responding"),
             ("NotJSONError", "the notebook is not valid JSON"),
             ("SchemaTooNewError", "the notebook's grading metadata is corrupt"),
             ("Skipping unknown notebook", "the notebook is not part of the assignment"),
             ("MemoryError", "nbgrader ran out of memory")]
    why = next((text for sign, text in known if sign in log), None)
    return why or f"nbgrader autograde failed (exit {rc}); see the course's work/logs"


# --- autograde / feedback / export -----------------------------------------------------------------------------
def secret_paths(course: Course, extra: list[Path]) -> list[Path]:
    """Paths no grading job may see: the real course, the solutions, the repository's grader folder, the inputs."""
    paths = [course.root, release.ROOT / "solutions", release.ROOT / "graders", *extra]
    needed = [Path(sys.prefix).resolve(), Path(release.__file__).resolve()]  # never hide what grading runs on
    return sorted({p.resolve() for p in paths if p.exists() and not any(n.is_relative_to(p.resolve()) for n in needed)})


def autograde(course: Course, students: list[str], limits: sandbox.Limits, jobs: int = 0,
              hide: list[Path] = ()) -> list[Result]:
    """Grade `students` in parallel jails; write results to the real gradebook from this process only."""
    ref = Reference.load(course)
    work = Path(tempfile.mkdtemp(prefix="course-grade-jobs-"))
    secrets_ = secret_paths(course, [work, *hide])
    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs or os.cpu_count() or 1)) as pool:
            futures = {sid: pool.submit(grade_one, course, sid, ref, limits, work, secrets_) for sid in students}
            results = []
            for sid, fut in futures.items():
                try:
                    result, graded = fut.result()
                except Exception as e:  # noqa: BLE001 - one broken submission never stops the batch
                    result, graded = Result(sid, "error", reason=f"grader failure: {type(e).__name__}: {e}"[:300]), None
                _store(course, ref, result, graded)
                results.append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _store(course: Course, ref: Reference, result: Result, graded) -> None:
    """Trusted write-back: the record, the graded notebook, and the gradebook row (none when there is no score)."""
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
    """Feedback HTML per graded student, rendered here from the graded notebook: test cells show their released
    (visible) source and a one-line verdict, never the hidden tests or a traceback."""
    ref = Reference.load(course)
    written = []
    for sid in students:
        graded, rec = course.autograded(sid), course.record(sid)
        if not graded.exists() or not rec.exists():
            continue
        result = Result(**json.loads(rec.read_text()))
        path = course.feedback(sid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_feedback(nbformat.read(graded, as_version=4), ref, result))
        written.append(path)
    return written


def render_feedback(nb, ref: Reference, result: Result) -> str:
    parts = [f"<h1>{html.escape(ASSIGNMENT)} — {html.escape(result.student_id)}</h1>",
             f"<p>Status: <b>{result.status}</b>. Score: {_fmt(result.score)} / {_fmt(ref.max_score)}.</p>"]
    if result.reason:
        parts.append(f"<p>{html.escape(result.reason)}</p>")
    for cell in nb.cells:
        gid, mark = _gid(cell), cell.metadata.get("course_grading", {})
        if mark.get("probe"):
            continue
        if gid in ref.locked:
            source = ref.locked[gid].source
        else:
            source = cell.source
        tag = "pre" if cell.cell_type == "code" else "div"
        parts.append(f"<{tag} class='{cell.cell_type}'>{html.escape(source)}</{tag}>")
        if gid in ref.tests:
            got = result.points.get(gid)
            verdict = _error_line(cell) or "passed"
            parts.append(f"<p class='verdict'>{html.escape(gid)}: {_fmt(got)} / {_fmt(ref.tests[gid])} — "
                         f"{html.escape(verdict)}</p>")
        elif cell.cell_type == "code":
            parts += [f"<pre class='out'>{html.escape(t)}</pre>" for t in _texts(cell)]
    style = "pre{background:#f6f6f6;padding:6px}.out{background:#fff;border-left:3px solid #ccc}.verdict{font-weight:bold}"
    return f"<!doctype html><meta charset='utf-8'><title>Feedback</title><style>{style}</style>{''.join(parts)}"


def _error_line(cell) -> str:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"failed: {out.get('ename')}: {str(out.get('evalue'))[:500]}"
    return ""


def _texts(cell) -> list[str]:
    texts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            texts.append(str(out.get("text", ""))[:5000])
        elif out.get("output_type") in ("execute_result", "display_data"):
            texts.append(str(out.get("data", {}).get("text/plain", ""))[:5000])
        elif out.get("output_type") == "error":
            texts.append(f"{out.get('ename')}: {str(out.get('evalue'))[:500]}")
    return texts


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
        out[r.student_id] = {"student_id": r.student_id, "status": r.status, "score": _fmt(r.score),
                             "max_score": _fmt(ref.max_score), "reason": r.reason, **per_ex}
    for sid in roster:
        if sid not in out:
            out[sid] = {"student_id": sid, "status": "missing", "score": "", "max_score": _fmt(ref.max_score),
                        "reason": "no submission", **{ex: "" for ex in release.EXERCISES}}
    return [out[k] for k in sorted(out)]


def export(course: Course, out: Path, roster: list[str] = ()) -> list[dict]:
    table = rows(course, Reference.load(course), roster)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(table)
    return table


# --- command line ----------------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("target", help="SUBMISSIONS folder (one sub-folder per student), or a step: "
                                       + " | ".join(SUBCOMMANDS))
    parser.add_argument("source", nargs="?", help="collect: the folder or zip files to collect from")
    parser.add_argument("--out", type=Path, help="grades CSV to write (SUBMISSIONS and export)")
    parser.add_argument("--course", type=Path, help="nbgrader course folder (steps: default graders/; "
                                                    "SUBMISSIONS: a throw-away temporary folder)")
    parser.add_argument("--solutions", type=Path, default=release.SOURCE, help="source notebook with solutions")
    parser.add_argument("--zip", action="store_true", help="collect: SOURCE holds LMS zip downloads")
    parser.add_argument("--regexp", default=ZIP_REGEXP, help="collect --zip: file name -> student_id, file_id")
    parser.add_argument("--exchange", type=Path, help="collect: from nbgrader's exchange rooted here")
    parser.add_argument("--roster", type=Path, help="file with one student id per line (absent ones: missing)")
    parser.add_argument("--due", help="due date, ISO 8601 (e.g. 2026-03-01T23:59:00+00:00); later = late")
    parser.add_argument("--student", action="append", help="autograde / feedback: only these students")
    parser.add_argument("--jobs", type=int, default=0, help="submissions graded in parallel (default: CPU count)")
    defaults = sandbox.Limits()
    parser.add_argument("--wall-s", type=float, default=defaults.wall_s, help="wall-clock limit per submission")
    parser.add_argument("--cell-s", type=int, default=defaults.cell_s, help="time limit per cell")
    parser.add_argument("--memory-mb", type=int, default=defaults.memory_mb, help="kernel address-space limit")
    parser.add_argument("--output-bytes", type=int, default=defaults.output_bytes, help="outputs kept per cell")
    parser.add_argument("--notebook-mb", type=float, default=defaults.notebook_mb, help="largest notebook accepted")


def _limits(args) -> sandbox.Limits:
    return sandbox.Limits(wall_s=args.wall_s, cell_s=args.cell_s, memory_mb=args.memory_mb,
                          output_bytes=args.output_bytes, notebook_mb=args.notebook_mb)


def _roster(args) -> list[str]:
    if not args.roster:
        return []
    return [line.strip() for line in args.roster.read_text().splitlines() if line.strip() and line[0] != "#"]


def grade_folder(submissions: Path, out: Path, course_dir: Path | None, args) -> list[dict]:
    """The contract: generate -> collect -> autograde -> feedback -> export, in a throw-away course by default."""
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
        autograde(course, valid, _limits(args), args.jobs, hide=[submissions.resolve(), out.resolve().parent])
        feedback(course, valid)
        return export(course, out, _roster(args))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _invalid_ids(course: Course) -> None:
    for folder in sorted((course.work / "bad-ids").glob("*")):
        note = json.loads((folder / ".collect.json").read_text())
        sid = f"{_safe(note['id'])}"
        result = Result(sid, "invalid", reason="the folder name is not a valid student id")
        course.record(sid).parent.mkdir(parents=True, exist_ok=True)
        course.record(sid).write_text(json.dumps(asdict(result)))


def run(args) -> int:
    course = Course((args.course or release.ROOT / "graders").resolve())
    if args.target not in SUBCOMMANDS:
        if not args.out:
            print("course grade SUBMISSIONS needs --out grades.csv", file=sys.stderr)
            return 2
        table = grade_folder(Path(args.target), args.out, args.course, args)
        print(f"{len(table)} rows -> {args.out} (" + ", ".join(
            f"{s}: {n}" for s in STATUSES if (n := sum(r['status'] == s for r in table))) + ")")
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
