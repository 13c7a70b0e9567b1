"""The grading jail: bubblewrap (`bwrap`) around `runner.py`, with an allowlist view of the filesystem.

Inside: the Python environment (read-only; the `course` package is absent), `/grader` holding only `runner.py`
and `wire.py`, a fresh size-limited tmpfs `/tmp` (the job's only writable place, so a disk fill costs at most
its quota), `/proc`, a minimal `/dev`. No HOME, no repository, no other students, no host sockets, no network
(`--unshare-all`), a cleared environment, no inherited descriptor but the channel, `--die-with-parent`,
`--new-session`, every capability dropped; memory by RLIMIT_AS (a cgroup v2 `memory.max` is not used: this
host has no writable cgroup v2 hierarchy), file size by RLIMIT_FSIZE, core dumps off.
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import site
import socket
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = (HERE / "runner.py", HERE / "wire.py")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission. Defaults suit the ten-exercise notebook on a 2-core machine."""

    wall_s: float = 600.0  # the whole submission, jail start-ups included
    cell_s: float = 120.0  # one learner cell
    exercise_s: float = 60.0  # all calls of one exercise's tests (callbacks included)
    memory_mb: int = 3072  # address space of the jailed process (RLIMIT_AS); torch alone maps ~0.7 GB
    disk_mb: int = 64  # the jail's tmpfs /tmp, and the largest file (RLIMIT_FSIZE)
    output_bytes: int = 20_000  # learner output kept per cell (shown back to the learner only)
    notebook_mb: float = 20.0  # largest submitted notebook accepted
    sandbox: bool = True  # False only with --unsafe-no-sandbox: learner code runs unjailed


class JailUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create namespaces here."""


def _ro_paths() -> list[str]:
    """What the interpreter needs: system libraries, the base Python and the environment's site-packages."""
    paths = {
        "/usr",
        "/etc/ld.so.cache",
        "/etc/ssl/certs/ca-certificates.crt",
        sys.base_prefix,
        sys.prefix,
        sysconfig.get_paths()["stdlib"],
        *site.getsitepackages(),
    }
    paths.add(str(Path(sys.executable).resolve().parent))
    return sorted(p for p in paths if os.path.exists(p))


def _hidden() -> list[str]:
    """Copies of `course` installed into site-packages (a non-editable install): covered by an empty tmpfs."""
    return sorted(str(Path(p) / "course") for p in site.getsitepackages() if (Path(p) / "course").is_dir())


def command(*, limits: Limits, fd: int = 3) -> list[str]:
    if not limits.sandbox:
        return [sys.executable, "-I", str(HERE / "runner.py"), str(fd)]
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise JailUnavailable(
            "bubblewrap (bwrap) is not installed: `make install` installs Debian's "
            "`bubblewrap`, or `apt-get install bubblewrap`"
        )
    argv = [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--cap-drop",
        "ALL",
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--size",
        str(limits.disk_mb << 20),
        "--tmpfs",
        "/tmp",
    ]
    # the fresh /tmp first: an environment that lives under /tmp (a CI clone) is bound on top of it, read-only
    for p in _ro_paths():
        argv += ["--ro-bind", p, p]
    for link, target in (("/lib", "usr/lib"), ("/lib64", "usr/lib64"), ("/bin", "usr/bin")):
        if os.path.islink(link):
            argv += ["--symlink", target, link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
    for p in _hidden():
        argv += ["--tmpfs", p]
    argv += ["--dir", "/grader"]
    for f in FILES:
        argv += ["--ro-bind", str(f), f"/grader/{f.name}"]
    argv += [
        "--remount-ro",
        "/",
    ]  # the jail's own root: read-only too, so /tmp (sized) is the only writable place
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "IPYTHONDIR": "/tmp/.ipython",
        "MPLCONFIGDIR": "/tmp",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONWARNINGS": "ignore",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "LANG": "C.UTF-8",
    }
    for k, v in env.items():
        argv += ["--setenv", k, v]
    return argv + ["--chdir", "/tmp", "--", sys.executable, "-I", "/grader/runner.py", str(fd)]


def _rlimits(limits: Limits):
    def apply() -> None:
        mem = limits.memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.disk_mb << 20, limits.disk_mb << 20))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    return apply


def start(*, limits: Limits) -> tuple[subprocess.Popen, socket.socket]:
    """Start the runner in a fresh jail; returns the process and the trusted end of the channel."""
    ours, theirs = socket.socketpair()
    argv = command(limits=limits, fd=theirs.fileno())
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(theirs.fileno(),),
        preexec_fn=_rlimits(limits),
        start_new_session=True,
    )
    theirs.close()
    return proc, ours


def kill(proc: subprocess.Popen) -> None:
    """Stop the jail: bwrap's PID namespace takes every process the learner started with it."""
    try:
        os.killpg(proc.pid, 9)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def check(limits: Limits) -> None:
    """Raise JailUnavailable, with bwrap's own words, when a jail cannot be made on this machine."""
    if limits.sandbox:
        _check()


@functools.lru_cache(maxsize=1)
def _check() -> None:
    argv = command(limits=Limits())
    argv = argv[: argv.index("--")] + ["--", sys.executable, "-I", "-c", "import torch"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise JailUnavailable(f"bubblewrap could not start: {e}") from None
    if done.returncode:
        raise JailUnavailable(
            f"bubblewrap could not start a jail here (user namespaces off?): {done.stderr.strip()[-500:]}"
        )
