"""The jail on its own, with plain Python commands (seconds, no kernel): wall-clock kill of everything spawned,
read-only filesystem, hidden paths, no network, memory and file-size limits of the kernel wrapper."""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from course.grading import sandbox

namespaces = pytest.mark.skipif(sandbox.isolation() != "namespaces",
                                reason="no user/network/PID namespaces on this machine (fallback tested instead)")


def _jail(tmp_path: Path, code: str, wall_s: float = 60, hide=()) -> tuple[sandbox.Run, str]:
    keep = tmp_path / "job"
    keep.mkdir(exist_ok=True)
    (keep / "script.py").write_text(textwrap.dedent(code))
    run = sandbox.run_jailed([sys.executable, str(keep / "script.py")], cwd=keep, env=dict(os.environ),
                             keep=[keep], hide=list(hide), wall_s=wall_s, log=tmp_path / "log.txt")
    return run, (tmp_path / "log.txt").read_text()


def _alive(token: str, within_s: float = 5.0) -> list[str]:
    """Processes whose command line holds `token`, polled until none is left or `within_s` passed (SIGKILLed
    processes of a dead PID namespace take a moment to disappear)."""
    deadline = time.monotonic() + within_s
    while (found := _matching(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def _matching(token: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if token.encode() in (proc / "cmdline").read_bytes():
                found.append(proc.name)
        except OSError:
            continue
    return found


def test_wall_limit_kills_the_job_and_everything_it_spawned(tmp_path):
    token = f"orphan-{secrets.token_hex(6)}"
    run, _ = _jail(tmp_path, f"""
        import subprocess, sys, time
        for session in (False, True):
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{token}"],
                             start_new_session=session)
        time.sleep(600)
    """, wall_s=3)
    assert run.timed_out and run.returncode is None
    assert 2.5 < run.wall_s < 30
    assert _alive(token) == []


def test_a_finished_job_leaves_no_process_behind(tmp_path):
    token = f"orphan-{secrets.token_hex(6)}"
    run, log = _jail(tmp_path, f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "{token}"], start_new_session=True)
        print("parent done")
    """)
    assert not run.timed_out and run.returncode == 0, log
    assert _alive(token) == []


@namespaces
def test_jail_filesystem_is_read_only_outside_the_job_and_hides_secrets(tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "answers.txt").write_text("42")
    outside = Path.cwd() / f"pwned-{secrets.token_hex(4)}"
    run, log = _jail(tmp_path, f"""
        import os
        open("inside.txt", "w").write("ok")
        for path in ["{outside}", "{secret}/answers.txt"]:
            try:
                open(path, "a").write("x")
                print("WROTE", path)
            except OSError as e:
                print("DENIED", e.errno)
        print("SECRET", os.path.exists("{secret}/answers.txt"))
    """, hide=[secret])
    assert run.returncode == 0, log
    assert f"WROTE {secret}" not in log and "SECRET False" in log
    # the jail's /tmp is a private throw-away tmpfs: a clone under /tmp (CI) may be written there, never for real
    assert f"WROTE {outside}" not in log or str(outside).startswith("/tmp/")
    assert (tmp_path / "job" / "inside.txt").read_text() == "ok"
    assert not outside.exists() and (secret / "answers.txt").read_text() == "42"


@namespaces
def test_jail_has_loopback_only(tmp_path):
    _, log = _jail(tmp_path, """
        import socket
        server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen()
        socket.create_connection(server.getsockname(), timeout=5).close()
        print("LOOPBACK OK")
        try:
            socket.create_connection(("1.1.1.1", 80), timeout=3)
            print("CONNECTED")
        except OSError as e:
            print("NO NETWORK", e.errno)
    """)
    assert "LOOPBACK OK" in log and "NO NETWORK" in log and "CONNECTED" not in log, log


def test_socket_guard_blocks_remote_addresses_only(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(sandbox.SOCKET_GUARD)
    code = textwrap.dedent("""
        import socket
        server = socket.socket(); server.bind(("127.0.0.1", 0)); server.listen()
        socket.create_connection(server.getsockname(), timeout=5).close()
        try:
            socket.create_connection(("192.0.2.1", 80), timeout=3)
        except PermissionError as e:
            print("BLOCKED", e)
    """)
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(tmp_path)},
                          capture_output=True, text=True, timeout=60, check=False)
    assert "BLOCKED" in done.stdout and "disabled while grading" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("bomb, sign", [("x = bytearray(4 * 2**30)", "MemoryError"),
                                        ("open('big.bin', 'wb').write(bytes(3 << 20))", "File too large")])
def test_kernel_wrapper_limits_memory_and_file_size(tmp_path, bomb, sign):
    code = f"try:\n    {bomb}\n    print('NO LIMIT')\nexcept Exception as e:\n    print(type(e).__name__, e)"
    done = subprocess.run([sys.executable, sandbox.SCRIPT, "kernel", "--memory-mb", "1024",
                           "--file-mb", "1", "--", sys.executable, "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert sign in done.stdout and "NO LIMIT" not in done.stdout, done.stdout + done.stderr
