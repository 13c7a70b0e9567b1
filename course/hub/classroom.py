"""One class on one machine: a roster becomes Unix users (one per learner, so that the kernel's file
permissions keep learners apart), each home gets the course's notebooks, and the hub folder holds nbgrader's
exchange and the Jupyter configuration of each role.

Roster: one member per line, `name` (a learner) or `name instructor`; `#` starts a comment.

    HUB/class.json        who the hub lets in, by role, and where the exchange is (read by
                          jupyterhub_config.py, which so never imports `course` and torch)
    HUB/python/           only where this environment's interpreter is private (e.g. pyenv under /root): a
                          venv of a copy of that interpreter (HUB/python-base, made relocatable with
                          patchelf) with a hard-linked copy of this environment's site-packages and scripts
                          (course, jupyter...), for the users' servers and the grading jail
    HUB/exchange/         nbgrader's exchange, mode 0777 as nbgrader documents (its own sub-folders: outbound
                          0755, inbound 0733 so learners can drop but not list, feedback 0711)
    HUB/config/<role>/    JUPYTER_CONFIG_PATH of that role's servers: nbgrader_config.py, and for learners the
                          formgrader / create-assignment / course-list extensions switched off
The repository's solutions/ (and graders/) become private to their owner: learners log in to a shell.

    HUB/passwords.txt     first passwords of the users created here (mode 0600, for the instructor)
"""

from __future__ import annotations

import json
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from course.grading import release

ROLES = ("learner", "instructor")
USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")  # portable Unix user names, valid nbgrader student ids
NOTEBOOKS = release.ROOT / "notebooks"
COURSE_DIR = "course"  # the instructor's `course grade --course ~/course` folder
LEARNER_OFF = ("formgrader", "create-assignment", "course-list")  # @jupyter/nbgrader Lab plugins


@dataclass(frozen=True)
class Member:
    name: str
    role: str


def read_roster(path: Path) -> list[Member]:
    """Members of the class; ValueError naming the line for a bad name or role, or a name given twice."""
    members: dict[str, Member] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        name, role = fields[0], fields[1] if len(fields) > 1 else "learner"
        if not USERNAME.match(name) or len(fields) > 2 or role not in ROLES:
            raise ValueError(
                f"{path}:{n}: {line.strip()!r}: expected 'name' or 'name instructor', name matching "
                f"{USERNAME.pattern}"
            )
        if name in members:
            raise ValueError(f"{path}:{n}: {name!r} is listed twice")
        members[name] = Member(name, role)
    if not any(m.role == "instructor" for m in members.values()):
        raise ValueError(f"{path}: no instructor (a line 'name instructor')")
    return list(members.values())


def course_id() -> str:
    from traitlets.config import Config

    c = Config()
    release.configure(c, "/")
    return c.CourseDirectory.course_id


def exchange(hub: Path) -> Path:
    return hub / "exchange"


def config_dir(hub: Path, role: str) -> Path:
    return hub / "config" / role


def nbgrader_config(hub: Path, role: str) -> str:
    """nbgrader_config.py of a role: the course's settings, the shared exchange, and the course root (the
    learner's home; the instructor's ~/course in `course grade`'s layout)."""
    from traitlets.config import Config

    c = Config()
    release.configure(c, "/")
    del c.CourseDirectory["root"]
    lines = [f"c.{s}.{k} = {v!r}" for s, traits in c.items() for k, v in traits.items()]
    lines.append(f"c.Exchange.root = {str(exchange(hub))!r}")
    if role == "instructor":
        lines += [
            f"c.CourseDirectory.root = os.path.expanduser('~/{COURSE_DIR}')",
            "c.CourseDirectory.source_directory = 'work/source'",
            "c.CourseDirectory.release_directory = 'work/release'",
            "c.CourseDirectory.db_url = 'sqlite:///' + c.CourseDirectory.root + '/gradebook.db'",
        ]
    else:
        lines.append("c.CourseDirectory.root = os.path.expanduser('~')")
    return "import os\n\nc = get_config()  # noqa: F821\n" + "\n".join(lines) + "\n"


def write_configs(hub: Path) -> None:
    for role in ROLES:
        d = config_dir(hub, role)
        (d / "labconfig").mkdir(parents=True, exist_ok=True)
        (d / "nbgrader_config.py").write_text(nbgrader_config(hub, role))
        off = {} if role == "instructor" else {f"@jupyter/nbgrader:{p}": True for p in LEARNER_OFF}
        (d / "labconfig" / "page_config.json").write_text(json.dumps({"disabledExtensions": off}))
        server = {
            f"nbgrader.server_extensions.{e}": role == "instructor" for e in ("formgrader", "course_list")
        }
        (d / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"jpserver_extensions": server}})
        )


def setup(roster: Path, hub: Path, *, home_base: Path | None = None) -> list[Member]:
    """Lay out the hub folder and create the roster's missing users; returns the members created."""
    members = read_roster(roster)
    hub.mkdir(parents=True, exist_ok=True)
    hub.chmod(0o755)
    by_role = {r: [m.name for m in members if m.role == r] for r in ROLES}
    state = {**by_role, "exchange": str(exchange(hub)), "bin": str(shared_bin(hub))}
    (hub / "class.json").write_text(json.dumps(state, indent=1))
    exchange(hub).mkdir(exist_ok=True)
    exchange(hub).chmod(0o777)
    write_configs(hub)
    created = [m for m in members if not user_exists(m.name)]
    for m in created:
        cmd = ["useradd", "--create-home", "--shell", "/bin/bash", "--user-group"]
        subprocess.run([*cmd, *(["--base-dir", str(home_base)] if home_base else []), m.name], check=True)
    for private in (release.SOURCE.parents[1], release.ROOT / "graders"):  # solutions, the repo's grading
        if private.exists():
            private.chmod(0o700)
    for m in members:
        provision(m)
    if created:
        set_passwords(hub, created)
    check_import(members[0].name, Path(state["bin"]))
    return created


def world_executable(path: Path) -> bool:
    """Can any user run `path` (every folder on the way searchable, the file executable by others)?"""
    path = path.resolve()
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


def shared_bin(hub: Path) -> Path:
    """The bin folder every user's server runs from: this environment's, or HUB/python's where this
    environment's interpreter is private."""
    here = Path(sys.executable).parent
    if world_executable(Path(sys.executable)):
        return here
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    base = shared_interpreter(hub, version)
    venv = hub / "python"
    subprocess.run([str(base), "-m", "venv", "--clear", "--without-pip", str(venv)], check=True)
    # This environment's packages as the venv's own (hard links where the file system allows): the grading
    # jail mounts the interpreter's site-packages, and a symbolic link would point outside the jail.
    packages = venv / "lib" / version / "site-packages"
    shutil.rmtree(packages)
    source = sysconfig.get_paths()["purelib"]
    if subprocess.run(["cp", "-al", source, str(packages)], capture_output=True).returncode:
        shutil.rmtree(packages, ignore_errors=True)
        subprocess.run(["cp", "-a", source, str(packages)], check=True)
    for folder in ("etc", "share"):  # Jupyter's extension switches and Lab's extensions, found by sys.prefix
        (venv / folder).mkdir(exist_ok=True)
        (venv / folder / "jupyter").symlink_to(Path(sys.prefix) / folder / "jupyter")
    for script in here.iterdir():  # entry points: same script, our interpreter in the #! line
        head = script.read_bytes()[:200] if script.is_file() and not script.is_symlink() else b""
        if head.startswith(f"#!{here}/python".encode()):
            text = script.read_text().split("\n", 1)[1]
            (venv / "bin" / script.name).write_text(f"#!{venv}/bin/python\n{text}")
            (venv / "bin" / script.name).chmod(0o755)
    return venv / "bin"


def shared_interpreter(hub: Path, version: str) -> Path:
    """A copy of this environment's base interpreter that every user may run, in HUB/python-base: the binary
    (its library path made relative with patchelf), libpython and the standard library (hard links where the
    file system allows; the base's own site-packages left out)."""
    src, base = Path(sys.base_prefix), hub / "python-base"
    shutil.rmtree(base, ignore_errors=True)
    (base / "bin").mkdir(parents=True)
    binary = base / "bin" / version
    shutil.copy2((src / "bin" / version).resolve(), binary)
    subprocess.run(["patchelf", "--set-rpath", "$ORIGIN/../lib", str(binary)], check=True)
    link = lambda a, b: os.link(a, b) if os.stat(a).st_dev == os.stat(base).st_dev else shutil.copy2(a, b)
    top = lambda folder, names: ["site-packages"] if Path(folder) == src / "lib" / version else []
    shutil.copytree(src / "lib", base / "lib", copy_function=link, ignore=top, symlinks=True)
    (base / "lib" / version / "site-packages").mkdir()
    return binary


def check_import(user: str, bin: Path) -> None:
    """Fail now, not at a learner's first login, when a user cannot run the course."""
    done = subprocess.run(
        ["runuser", "-u", user, "--", str(bin / "python"), "-c", "import course.grading.release"],
        cwd="/",
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise ValueError(f"user {user!r} cannot import the course from {bin}: {done.stderr[-1000:]}")


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def provision(m: Member) -> None:
    """A private home (0700) with the course's notebooks (kept if already there) and, for an instructor,
    the private course folder `course grade` works in (~/course, solutions in ~/course/solutions/)."""
    user = pwd.getpwnam(m.name)
    home = Path(user.pw_dir)
    home.chmod(0o700)
    own = [home / "notebooks", *([home / COURSE_DIR] if m.role == "instructor" else [])]
    if not own[0].exists():
        shutil.copytree(NOTEBOOKS, own[0], ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    if m.role == "instructor":  # with its own copy of the solutions: the repository's are private to root
        solutions = own[1] / "solutions" / release.ASSIGNMENT / release.NOTEBOOK
        solutions.parent.mkdir(parents=True, exist_ok=True)
        own[1].chmod(0o700)
        shutil.copyfile(release.SOURCE, solutions)
    for top in own:
        for path in [top, *top.rglob("*")]:
            os.chown(path, user.pw_uid, user.pw_gid)


def set_passwords(hub: Path, members: list[Member]) -> None:
    """A random first password per new user (PAM logs them in), appended to HUB/passwords.txt (0600)."""
    words = {m.name: secrets.token_urlsafe(9) for m in members}
    subprocess.run(["chpasswd"], input="".join(f"{n}:{p}\n" for n, p in words.items()), text=True, check=True)
    path = hub / "passwords.txt"
    path.touch(mode=0o600)
    with path.open("a") as f:
        f.writelines(f"{n} {p}\n" for n, p in words.items())


def remove(roster: Path) -> None:
    """Delete the roster's users with their homes (the end of a class, or of a test)."""
    for m in read_roster(roster):
        if user_exists(m.name):
            subprocess.run(["userdel", "--remove", m.name], check=True, capture_output=True)
