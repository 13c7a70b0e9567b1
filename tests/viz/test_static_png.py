"""PNG fallbacks: a kernel that displays widgets starts no browser; `make lab`'s server adds the PNGs when it
saves a notebook (one Kaleido browser, in the server)."""

from __future__ import annotations

import base64
import os

import nbformat
import psutil
import pytest

from course.viz.static import PLOTLY_MIME, chromium_path, figure_json, save_hook

WIDGETS = """from course.viz import MaskBuilder, PositionalExplorer
MaskBuilder(kind="causal", T=5).show()
PositionalExplorer(mode="rope", T=16, d=16).show()"""


def test_a_kernel_that_displays_widgets_starts_no_browser(monkeypatch):
    from jupyter_client.manager import start_new_kernel

    monkeypatch.delenv("COURSE_VIZ_PNG")  # the learner's default: PNGs whenever a Chromium exists
    km, kc = start_new_kernel(kernel_name="python3", env=dict(os.environ, PYTHONWARNINGS="ignore"))
    try:
        outputs = []
        reply = kc.execute_interactive(WIDGETS, timeout=120, output_hook=outputs.append)
        assert reply["content"]["status"] == "ok", reply["content"]
        data = [m["content"]["data"] for m in outputs if m["msg_type"] == "display_data"]
        assert sum(PLOTLY_MIME in d for d in data) == 2 and not any("image/png" in d for d in data)
        kernel = psutil.Process(km.provisioner.process.pid)
        browsers = [p.name() for p in kernel.children(recursive=True) if "chrom" in p.name().lower()]
        assert browsers == [], f"the kernel started {browsers} (~400 MB per kernel)"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def notebook() -> dict:
    import plotly.graph_objects as go

    figure = figure_json(go.Figure(go.Heatmap(z=[[0, 1], [1, 0]])))
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("text"),
        nbformat.v4.new_code_cell(
            "w",
            outputs=[
                nbformat.v4.new_output("display_data", data={PLOTLY_MIME: figure, "text/plain": "<static>"}),
                nbformat.v4.new_output("stream", text="hello\n"),
                nbformat.v4.new_output("display_data", data={PLOTLY_MIME: figure, "image/png": "kept"}),
            ],
        ),
    ]
    return nb


def test_save_hook_adds_a_png_to_each_figure_without_one(monkeypatch):
    if chromium_path() is None:
        pytest.skip("no Chromium: saved notebooks carry plotly JSON only")
    monkeypatch.setenv("COURSE_VIZ_PNG", "1")
    nb = notebook()
    save_hook(model={"type": "notebook", "content": nb}, path="a.ipynb", contents_manager=None)
    first, stream, kept = nb.cells[1].outputs
    png = base64.b64decode(first["data"]["image/png"])
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000
    assert "data" not in stream and kept["data"]["image/png"] == "kept"


def test_save_hook_off_or_not_a_notebook_adds_nothing(monkeypatch):
    monkeypatch.setenv("COURSE_VIZ_PNG", "0")
    nb = notebook()
    save_hook(model={"type": "notebook", "content": nb}, path="a.ipynb", contents_manager=None)
    assert "image/png" not in nb.cells[1].outputs[0]["data"]
    monkeypatch.setenv("COURSE_VIZ_PNG", "1")
    save_hook(model={"type": "file", "content": "text"}, path="a.txt", contents_manager=None)
