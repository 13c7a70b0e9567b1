"""`make lab` as a learner runs it: the URL it prints opens the start page (not the Launcher), `course` is on
PATH in JupyterLab's own terminal (a login shell would reset PATH and drop the virtual environment), and a
saved notebook's figures get their PNGs from the server (kernels start no browser)."""

import asyncio
import concurrent.futures
import json
import re
import shlex
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO, free_port, http_ok, start, stop, throwaway_env, wait_ready
from .pages import CURRENT

pytestmark = pytest.mark.browser
START_PAGE = "notebooks/00-start-here.ipynb"


def make_lab_command() -> list[str]:
    """The JupyterLab command line `make lab` runs (from a dry run of make)."""
    dry = subprocess.run(
        ["make", "-n", "-s", "lab"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return shlex.split(next(line for line in dry.splitlines() if "jupyter lab" in line))


@pytest.fixture(scope="module")
def make_lab(tmp_path_factory):
    """`make lab`'s server, on a free port, without a token, in a throw-away root holding the start page."""
    base = tmp_path_factory.mktemp("make-lab")
    root = base / "root"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / START_PAGE, root / START_PAGE)
    env, port, log = throwaway_env(base), free_port(), base / "make-lab.log"
    env.pop("COURSE_VENV_BIN", None)
    (base / "settings" / "@jupyterlab" / "apputils-extension").mkdir(parents=True, exist_ok=True)
    (
        base / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    ).write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    cmd = [a for a in make_lab_command() if not a.startswith("--ServerApp.root_dir=")] + [
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        "--IdentityProvider.token=",
        "--ServerApp.password=",
        "--ServerApp.disable_check_xsrf=True",
        "--LabApp.expose_app_in_browser=True",
        "--no-browser",
        "--allow-root",
    ]
    proc = start(cmd, REPO, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(lambda: http_ok(f"{url}/api"), proc, log)
        yield url, log, root
    finally:
        stop(proc, log)


def test_printed_url_opens_the_start_page(make_lab, page):
    url, log, _ = make_lab
    printed = re.findall(r"http://127\.0\.0\.1:\d+/\S*", log.read_text())
    assert printed and all(u.split("?")[0] == f"{url}/lab/tree/{START_PAGE}" for u in printed), printed
    page.goto(printed[0])
    page.wait_for_function("() => window.jupyterapp")
    page.wait_for_function(f"p => {CURRENT}?.context?.path === p", arg=START_PAGE)
    page.wait_for_selector(".jp-Notebook .jp-Cell")


async def terminal_output(url: str, line: str, done: str, timeout: float = 60) -> str:
    """Open a JupyterLab terminal (as its Terminal tab does), type `line`, return the output up to `done`."""
    from tornado.httpclient import AsyncHTTPClient
    from tornado.websocket import websocket_connect

    reply = await AsyncHTTPClient().fetch(f"{url}/api/terminals", method="POST", body="{}")
    name = json.loads(reply.body)["name"]
    ws = await websocket_connect(f"ws{url[4:]}/terminals/websocket/{name}")
    await ws.write_message(json.dumps(["stdin", line + "\r"]))
    out = ""

    async def read():
        nonlocal out
        while done not in out:
            msg = await ws.read_message()
            assert msg is not None, f"terminal closed; it printed {out!r}"
            kind, *content = json.loads(msg)
            if kind == "stdout":
                out += content[0]

    try:
        await asyncio.wait_for(read(), timeout)
    finally:
        ws.close()
    return out


def test_course_is_on_path_in_labs_terminal(make_lab):
    url, _, _ = make_lab
    # the typed line is echoed as typed; only the shell's own output holds "END-42"
    line = "command -v course || echo NOT-FOUND; echo END-$((6*7))"
    with concurrent.futures.ThreadPoolExecutor(
        1
    ) as pool:  # Playwright runs its own event loop in this thread
        out = pool.submit(asyncio.run, terminal_output(url, line, "END-42")).result()
    venv_course = str(Path(sys.executable).parent / "course")
    assert "NOT-FOUND" not in out.split("END-$")[-1] and venv_course in out, out


def test_saving_a_notebook_adds_pngs_of_its_figures(make_lab):
    import plotly.graph_objects as go

    from course.viz.static import PLOTLY_MIME, chromium_path, figure_json

    if chromium_path() is None:
        pytest.skip("no Chromium: saved notebooks carry plotly JSON only")
    url, _, root = make_lab
    figure = figure_json(go.Figure(go.Heatmap(z=[[0, 1], [1, 0]])))
    output = {"output_type": "display_data", "metadata": {}, "data": {PLOTLY_MIME: figure}}
    cell = {"cell_type": "code", "source": "w", "metadata": {}, "execution_count": 1, "outputs": [output]}
    nb = {"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    body = json.dumps({"type": "notebook", "format": "json", "content": nb}).encode()
    request = urllib.request.Request(f"{url}/api/contents/saved.ipynb", data=body, method="PUT")
    with urllib.request.urlopen(request, timeout=120) as reply:  # Lab's save: the server's pre-save hook runs
        assert reply.status in (200, 201)
    saved = json.loads((root / "saved.ipynb").read_text())["cells"][0]["outputs"][0]["data"]
    assert saved["image/png"].startswith("iVBORw0KGgo"), "no PNG in the saved figure output"  # base64 PNG


def test_make_lab_serves_plotlys_widget_bundle_once_for_all_figures(make_lab):
    url, _, _ = make_lab
    with urllib.request.urlopen(f"{url}/static/widgetbundle.js", timeout=60) as reply:
        assert reply.status == 200 and b"export{" in reply.read()  # the ES module figures import
