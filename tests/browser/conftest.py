"""Real-browser fixtures: Debian's `chromium` driven by Playwright, and one throw-away JupyterLab server per
test session (galata's test config, free loopback port, temporary HOME / config / runtime / settings dirs).

Every test here is marked `browser`. A screenshot of each test's page lands in `test-artifacts/`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import plotly
import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_S = 90
# Lab settings for tests: every cell stays in the DOM, no news toast, no autosave racing the tests.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def throwaway_env(base: Path) -> dict:
    """Environment with HOME and every Jupyter dir inside `base`, the venv's bin first on PATH."""
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for var, name in [
        ("HOME", "home"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_DATA_DIR", "data"),
        ("TMPDIR", "tmp"),
        ("JUPYTERLAB_SETTINGS_DIR", "settings"),
    ]:
        (base / name).mkdir(parents=True, exist_ok=True)
        env[var] = str(base / name)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("JUPYTER_PATH", None)
    return env


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_ready(ready, proc: subprocess.Popen, log: Path, timeout: float = SERVER_START_S) -> None:
    """Poll `ready()` until true; fail with the server log if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"server not ready within {timeout} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)  # polling interval for the server socket, not a wait on the page


def start(cmd: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    """Start a server in its own process group (so that `stop` also ends its kernels and children)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen, log: Path) -> None:
    """SIGTERM the server's process group, SIGKILL it after 15 s; keep its log as an artefact."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            break
        except (ProcessLookupError, subprocess.TimeoutExpired):
            continue
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(log, ARTIFACTS / log.name)


class Server:
    """A running server: `url` (no trailing slash), `root` (its root dir), `env`, `log` (a file) and, for
    JupyterLab, `exchange` (nbgrader's exchange dir; course settings from
    `course.grading.release.configure`)."""

    def __init__(self, url: str, root: Path, env: dict, log: Path, exchange: Path | None = None):
        self.url, self.root, self.env, self.log, self.exchange = url, root, env, log, exchange


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian's chromium is not on PATH: run `make browser-deps`")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if call.when == "call":
        item.passed_call = report.passed
    return report


@pytest.fixture
def page(browser, request):
    """A fresh page (own context); its final state is saved to test-artifacts/<test>.png, and a Playwright
    trace of a failed test to test-artifacts/<test>-trace.zip."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    context.tracing.start(screenshots=True, snapshots=True)
    pg = context.new_page()
    console = []
    pg.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    pg.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    yield pg
    ARTIFACTS.mkdir(exist_ok=True)
    name = request.node.name.replace("/", "_")
    (ARTIFACTS / f"{name}-console.log").write_text("\n".join(console))
    try:
        pg.screenshot(path=ARTIFACTS / f"{name}.png", full_page=False)
    finally:
        failed = not getattr(request.node, "passed_call", False)
        context.tracing.stop(path=ARTIFACTS / f"{name}-trace.zip" if failed else None)
        context.close()


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory):
    """One JupyterLab server for the session, root dir empty: tests copy in the notebooks they open."""
    base = tmp_path_factory.mktemp("lab")
    env = throwaway_env(base)
    root = base / "root"
    root.mkdir()
    for plugin, values in LAB_SETTINGS.items():
        path = base / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    (base / "exchange").mkdir()
    (Path(env["JUPYTER_CONFIG_DIR"]) / "nbgrader_config.py").write_text(  # the course's settings, our dirs
        f"from course.grading.release import configure\nconfigure(c, {str(root)!r})\n"
        f"c.Exchange.root = {str(base / 'exchange')!r}\n"
    )
    port = free_port()
    config = base / "jupyter_lab_test_config.py"
    config.write_text(
        textwrap.dedent(f"""
        from jupyterlab.galata import configure_jupyter_server
        configure_jupyter_server(c)
        c.ServerApp.allow_root = True
        c.ServerApp.ip = "127.0.0.1"
        c.ServerApp.port = {port}
        c.ServerApp.root_dir = {str(root)!r}
        c.LabApp.user_settings_dir = {str(base / "settings")!r}
        # as `make lab` (course/lab/jupyter_lab_config.py): plotly's widget bundle served once, for all
        # figures
        c.ServerApp.extra_static_paths = [{str(Path(plotly.__file__).parent / "package_data")!r}]
        # as `make lab`: Validate reports totals and diagnoses first
        from course.grading.validate import install
        install()
    """)
    )
    log = base / "jupyterlab-server.log"
    env = dict(env, COURSE_PLOTLY_BUNDLE="1")
    proc = start([sys.executable, "-m", "jupyterlab", f"--config={config}"], root, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(lambda: http_ok(f"{url}/api"), proc, log)
        yield Server(url, root, env, log, base / "exchange")
    finally:
        stop(proc, log)
