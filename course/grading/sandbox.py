"""Jails for grading: one submission's nbgrader run, and the learner's kernel inside it.

`run_jailed(cmd, ...)` runs `cmd` (nbgrader autograde) in new network, PID and mount namespaces (`unshare`; a user
namespace too when not root): loopback only, a read-only filesystem except the job's own folder, fresh empty
`/tmp` and `/dev/shm`, secret paths (solutions, the real gradebook, other students) covered by empty mounts, and a
wall-clock limit. When the command ends or is killed, the PID namespace dies with every process the learner
spawned. The kernel is started through `python sandbox.py kernel ...` (our `python3` kernelspec),
which nests a second jail: its own PID and mount namespaces (the private gradebook copy and the submitted notebook
hidden too), RLIMIT_AS / RLIMIT_FSIZE, no capabilities, no network sockets.
Where namespaces are unavailable, the same code degrades to process-group kill, rlimits and a socket guard.
"""
from __future__ import annotations

import ctypes
import functools
import os
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

CLONE_NEWNS, CLONE_NEWPID = 0x00020000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
_STATVFS_TO_MS = {os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV, os.ST_NOEXEC: MS_NOEXEC,
                  os.ST_NOATIME: 1024, os.ST_NODIRATIME: 2048, os.ST_RELATIME: 1 << 21}
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
SCRIPT = os.path.abspath(__file__)  # run by path: `python -m course...` would import torch through `course`
JOB_ENV = "COURSE_GRADE_JOB"
JAIL_FAILED = "course grading jail could not be set up"  # every process of a job inherits it, so leftovers can be found
SPECIAL_MOUNTS = ("/proc", "/dev")  # left as they are (device nodes, the process table)
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one submission. Defaults suit the ten-exercise notebook on a 2-core machine."""
    wall_s: float = 600.0          # the whole nbgrader run of one submission, kernel start-up included
    cell_s: int = 120              # one cell (nbgrader's Execute.timeout)
    memory_mb: int = 3072          # address space of the kernel (RLIMIT_AS); torch alone maps ~0.7 GB
    file_mb: int = 64              # largest file the kernel may write (RLIMIT_FSIZE)
    output_bytes: int = 200_000    # outputs kept per cell; the rest is dropped with a note
    notebook_mb: float = 20.0      # largest submitted notebook accepted


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = lambda s: None if s is None else s.encode()
    _check(_libc.mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


@functools.lru_cache(maxsize=1)
def unshare_prefix() -> tuple[str, ...]:
    """The `unshare` command line giving a job its own namespaces, or () where this machine does not allow it."""
    flags = ["--net", "--pid", "--fork", "--kill-child", "--mount", "--mount-proc"]
    if os.geteuid() != 0:
        flags = ["--user", "--map-root-user", *flags]
    cmd = ("unshare", *flags, "--")
    try:
        ok = subprocess.run([*cmd, "true"], capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.SubprocessError):
        ok = False
    return cmd if ok else ()


def isolation() -> str:
    """'namespaces' (full jail) or 'process-group' (fallback: rlimits, socket guard, group kill)."""
    return "namespaces" if unshare_prefix() else "process-group"


# --- inside a jail ---------------------------------------------------------------------------------------------
def _loopback_up() -> None:
    import fcntl
    import socket
    import struct
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14s", b"lo", 0x1 | 0x8 | 0x40, b"\0" * 14))  # SIOCSIFFLAGS UP


def _locked_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _STATVFS_TO_MS.items() if f & st)


def _mountpoints() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4].replace("\\040", " ") for line in f]
    return sorted(set(points), key=len)


def confine(keep: list[str], hide: list[str], private_tmp: bool = True) -> None:
    """In a fresh mount namespace: cover `hide` and /tmp, /dev/shm with empty tmpfs, keep `keep` writable at the
    same paths, and remount everything else read-only (/tmp too unless `private_tmp`: a writable throw-away)."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    # What grading runs on stays visible (read-only below) even when it lives under /tmp, e.g. a CI clone:
    # the interpreter's environment and the `course` package — never the rest of the repository.
    need = [p for p in (sys.prefix, str(Path(__file__).resolve().parents[1])) if p not in keep]
    fds = [os.open(p, os.O_PATH | os.O_DIRECTORY) for p in [*keep, *need]]
    for path in ["/tmp", "/dev/shm", *hide]:
        if os.path.isdir(path):  # a path under one covered already is gone
            _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "size=256m,mode=1777")
    for path, fd in zip([*keep, *need], fds):
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    writable = {os.path.realpath(p) for p in keep} | {"/dev/shm"} | ({"/tmp"} if private_tmp else set())
    for point in _mountpoints():
        if point in writable or point.startswith(SPECIAL_MOUNTS) or point.startswith("/sys"):
            continue
        try:
            _mount(None, point, None, MS_REMOUNT | MS_BIND | MS_RDONLY | _locked_flags(point))
        except OSError:
            pass  # a mount this namespace may not change (e.g. already read-only and locked)


def _drop_capabilities() -> None:
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    for cap in range(last + 1):
        _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _set_limits(memory_mb: int, file_mb: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb << 20, file_mb << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


SOCKET_GUARD = '''"""Installed by course.grading.sandbox: no network while grading (loopback and Unix sockets allowed)."""
import sys
sys.modules.setdefault("rfc3987_syntax", None)  # jsonschema's optional IRI checker: 1.6 s CPU per nbformat import
import socket as _s
_LOCAL = ("127.0.0.1", "::1", "localhost")
def _check(sock, address):
    host = address[0] if isinstance(address, tuple) else None
    if sock.family in (_s.AF_INET, _s.AF_INET6) and host not in _LOCAL:
        raise PermissionError(1, "network access is disabled while grading")
def _wrap(original, address_arg):
    def guarded(self, *args):
        _check(self, args[address_arg])
        return original(self, *args)
    return guarded
_s.socket.connect = _wrap(_s.socket.connect, 0)
_s.socket.connect_ex = _wrap(_s.socket.connect_ex, 0)
_s.socket.sendto = _wrap(_s.socket.sendto, -1)
'''


def kernel_main(keep: list[str], hide: list[str], memory_mb: int, file_mb: int, argv: list[str]) -> None:
    """Start the learner's kernel in a nested jail (PID + mount namespaces) when possible, then exec `argv`."""
    os.environ.pop("JPY_PARENT_PID", None)
    keep = [os.getcwd(), *keep]
    if _libc.unshare(CLONE_NEWNS | CLONE_NEWPID) != 0:  # no namespaces here: limits and the socket guard only
        _set_limits(memory_mb, file_mb)
        os.execv(argv[0], argv)
    child = os.fork()
    if child == 0:  # PID 1 of the kernel's namespace
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        confine(keep, hide, private_tmp=False)
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
        _set_limits(memory_mb, file_mb)
        _drop_capabilities()
        os.chdir(keep[0])
        os.execv(argv[0], argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupts reach the kernel directly (same process group)
    signal.signal(signal.SIGTERM, lambda *_: os.kill(child, signal.SIGKILL))
    _, status = os.waitpid(child, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def jail_main(keep: list[str], hide: list[str], argv: list[str]) -> None:
    """Inside `unshare`: loopback up, filesystem confined, then exec `argv` (nbgrader)."""
    cwd = os.getcwd()
    try:
        _loopback_up()
        confine(keep, hide)
        os.chdir(cwd)  # re-enter through the new mounts
    except OSError as e:
        sys.exit(f"{JAIL_FAILED}: {e}")
    os.execv(argv[0], argv)


# --- the trusted side ------------------------------------------------------------------------------------------
@dataclass
class Run:
    returncode: int | None   # None when killed at the wall-clock limit
    timed_out: bool
    wall_s: float
    cpu_s: float = 0.0       # user + system time of the job and every process it waited for


def run_jailed(cmd: list[str], *, cwd: Path, env: dict, keep: list[Path], hide: list[Path], wall_s: float,
               log: Path) -> Run:
    """Run `cmd` jailed, with output to `log`; kill it and everything it spawned after `wall_s` seconds."""
    prefix = unshare_prefix()
    if prefix:
        args = [str(p) for k in keep for p in ("--keep", k)] + [str(p) for h in hide for p in ("--hide", h)]
        cmd = [*prefix, sys.executable, SCRIPT, "jail", *args, "--", *cmd]
    tag = f"{JOB_ENV}={os.getpid()}-{time.monotonic_ns()}"
    env = {**env, JOB_ENV: tag.split("=", 1)[1]}
    start = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        rc, cpu = _wait(proc, start + wall_s)
        _kill_tagged(tag.encode())
    return Run(rc, rc is None, time.monotonic() - start, cpu)


def _wait(proc: subprocess.Popen, deadline: float) -> tuple[int | None, float]:
    """Reap `proc` (exit code, CPU seconds), killing its whole process group at `deadline` (exit code None)."""
    rc = None
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            rc = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.05)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if rc is None:
        _, _, usage = os.wait4(proc.pid, 0)
    proc.returncode = -9 if rc is None else rc
    return rc, usage.ru_utime + usage.ru_stime


def _kill_tagged(tag: bytes) -> None:
    """Fallback for processes that left the group (setsid): kill whatever still carries the job's tag. (With
    namespaces, the PID namespace has already taken them all.)"""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and tag in (proc / "environ").read_bytes().split(b"\0"):
                os.kill(int(proc.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _output_size(content: dict) -> int:
    if isinstance(content, str):
        return len(content)
    if isinstance(content, dict):
        return sum(_output_size(v) for v in content.values())
    if isinstance(content, list):
        return sum(_output_size(v) for v in content)
    return 8


def _bounded_execute():
    """nbgrader's Execute, keeping at most `output_bytes` of output per cell (nbgrader only counts lines)."""
    from nbgrader.preprocessors import Execute
    from traitlets import Integer

    class BoundedExecute(Execute):
        output_bytes = Integer(200_000, help="outputs kept per cell, in bytes").tag(config=True)

        def output(self, outs, msg, display_id, cell_index):
            used = getattr(self, "_used", {})
            self._used = used
            size = _output_size(msg.get("content", {}))
            used[cell_index] = used.get(cell_index, 0) + size
            if used[cell_index] <= self.output_bytes:
                return super().output(outs, msg, display_id, cell_index)
            content, kind = msg.get("content", {}), msg.get("msg_type")
            if kind == "error" or (kind == "stream" and content.get("name") == "stderr"):
                content.update(traceback=content.get("traceback", [])[:20], text=str(content.get("text", ""))[:1000])
                return super().output(outs, msg, display_id, cell_index)  # errors and stderr decide the grade
            if not any(TRUNCATED_NOTE in str(o.get("text", "")) for o in outs):
                note = {"name": "stdout", "text": f"{TRUNCATED_NOTE}: more than {self.output_bytes} bytes]\n"}
                outs.append(self._stream_node(note))
            return None

        @staticmethod
        def _stream_node(content):
            from nbformat.v4 import new_output
            return new_output("stream", name=content["name"], text=content["text"])

    return BoundedExecute


TRUNCATED_NOTE = "[output truncated by the grader"


def __getattr__(name: str):
    if name == "BoundedExecute":  # imported by the jobs' nbgrader config only; keeps nbgrader out of start-up
        return _bounded_execute()
    raise AttributeError(name)


def _split(argv: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """`--opt a --opt b ... -- cmd...` -> ({opt: [a, b]}, cmd)."""
    cut = argv.index("--")
    opts: dict[str, list[str]] = {}
    for flag, value in zip(argv[:cut:2], argv[1:cut:2]):
        opts.setdefault(flag.lstrip("-"), []).append(value)
    return opts, argv[cut + 1:]


if __name__ == "__main__":
    mode, (options, command) = sys.argv[1], _split(sys.argv[2:])
    if mode == "jail":
        jail_main(options.get("keep", []), options.get("hide", []), command)
    elif mode == "kernel":
        kernel_main(options.get("keep", []), options.get("hide", []), int(options["memory-mb"][0]),
                    int(options["file-mb"][0]), command)
    else:
        sys.exit("usage: python sandbox.py jail|kernel [--keep P] [--hide P] ... -- command")
