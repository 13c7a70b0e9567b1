"""`course explore`: Voilà serves the attention explorer of a chosen shipped model and prompt, no code shown;
the heatmap draws the view model's weights, the layer slider and head buttons switch them, hover reads query,
key and weight, masked cells are empty in the data and drawn grey."""

import os
import signal
import sys
import time
import urllib.request

import pytest

from course.viz.app import load_prompt
from course.viz.attention_view import AttentionView
from course.viz.heatmap import MASK_GREY
from course.viz.static import grid

from .conftest import ARTIFACTS, Server, free_port, port_open, start, stop, throwaway_env, wait_ready
from .pages import (
    cell_rgb,
    cell_xy,
    click_toggle,
    figure,
    hex_rgb,
    hover,
    set_slider,
    wait_heatmap,
    wait_title_change,
)

pytestmark = pytest.mark.browser
MODEL, PROMPT = "copy", "^abcdefgh|abcd"  # a chosen model and prompt (export-html's test covers the defaults)


def explore_argv(port: int) -> list[str]:
    """`course explore` on the test's model and prompt, serving on `port`."""
    argv = [
        "-m",
        "course",
        "explore",
        "--model",
        MODEL,
        "--prompt",
        PROMPT,
        "--port",
        str(port),
        "--no-browser",
    ]
    return [sys.executable, *argv]


@pytest.fixture(scope="module")
def explore_app(tmp_path_factory):
    base = tmp_path_factory.mktemp("explore")
    env, port, log = throwaway_env(base), free_port(), base / "course-explore.log"
    proc = start(
        explore_argv(port),
        base,
        env,
        log,
    )
    try:
        wait_ready(lambda: port_open(port), proc, log)  # the port only: a GET of / would run the notebook
        yield Server(f"http://127.0.0.1:{port}", base, env, log)
    finally:
        stop(proc, log)


@pytest.fixture(scope="module")
def reference():
    model, _, ids, labels = load_prompt(MODEL, PROMPT)
    return AttentionView.from_model(model, ids, labels)


def test_explore_serves_the_explorer_without_code(explore_app, reference, page):
    v = reference
    page.goto(f"{explore_app.url}/")
    live = page.locator(".jp-OutputArea-output").filter(has=page.locator(".widget-slider"))
    plot = wait_heatmap(page, live, timeout=120_000)
    static_copy = page.locator(".jp-OutputArea-child:has(+ .jp-OutputArea-child .jupyter-widgets)")
    assert static_copy.count() == 1
    static_copy.first.wait_for(state="hidden", timeout=10_000)  # the live view hides its static copy
    assert page.locator(".jp-InputArea-editor, .cm-editor, .CodeMirror, .jp-InputPrompt").count() == 0
    assert "import explorer" not in page.content()  # the code is not even in the HTML
    assert (
        page.locator(".widget-slider").count() >= 1
        and page.locator(".widget-toggle-button").count() == v.n_heads
    )

    fig = figure(plot)
    assert fig["title"] == v.heatmap(0, 0).title
    assert fig["data"][0]["z"] == grid(v.heatmap(0, 0).z)
    set_slider(page, 1)
    title = wait_title_change(plot, fig["title"])
    assert title == v.heatmap(1, 0).title and figure(plot)["data"][0]["z"] == grid(v.heatmap(1, 0).z)
    head = v.n_heads - 1
    click_toggle(page, f"H{head}")
    wait_title_change(plot, title)
    want = grid(v.heatmap(1, head).z)
    assert figure(plot)["data"][0]["z"] == want
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(".widget-vbox").first.screenshot(path=ARTIFACTS / "explorer.png")  # the README's picture

    T = v.T_q
    text = hover(plot, 0, T - 1, 1)
    assert v.q_labels[T - 1] in text and v.k_labels[1] in text and f"{want[T - 1][1]:.3f}" in text, text
    assert want[0][T - 1] is None
    assert "N/A" in hover(plot, 1, 0, T - 1)
    page.mouse.move(0, 0)
    assert cell_rgb(plot, 0, 0, T - 1) == hex_rgb(MASK_GREY)

    # the overview: a click on the grey (masked) half of a tile selects that head too
    x0, x1, y0, _ = v.tile_box(0, 0)
    row, col = int(y0 + 0.5), int(x1 - 0.5)  # query 0, last key: masked
    assert cell_rgb(plot, 3, row, col) == hex_rgb(MASK_GREY)
    title = figure(plot)["title"]
    page.mouse.click(*cell_xy(plot, 3, row, col))
    assert wait_title_change(plot, title) == v.heatmap(0, 0).title


def children(pid: int) -> set[int]:
    """Every live descendant of a process (from /proc)."""
    parents = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(d))
    out, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def alive(pid: int) -> bool:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_explore_stops_cleanly_on_a_signal(tmp_path, sig):
    """SIGTERM / SIGINT to `course explore` ends the Voilà server and the kernel it started, not just
    itself."""
    env, port, log = throwaway_env(tmp_path), free_port(), tmp_path / "course-explore.log"
    proc = start(
        explore_argv(port),
        tmp_path,
        env,
        log,
    )
    try:
        wait_ready(lambda: port_open(port), proc, log)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=180) as page:  # runs the notebook
            assert page.status == 200
        family = children(proc.pid)
        assert len(family) >= 2, f"expected Voilà and its kernel under course explore, got {family}"
        os.kill(proc.pid, sig)
        assert proc.wait(60) == 0
        deadline = time.monotonic() + 30
        while any(map(alive, family)) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the process table for the kernel's exit
        left = [p for p in family if alive(p)]
        assert not left, f"still running after {sig.name}: {left}\n{log.read_text()[-3000:]}"
    finally:
        stop(proc, log)
