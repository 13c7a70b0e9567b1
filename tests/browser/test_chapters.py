"""The course in JupyterLab, as a learner meets it: a chapter opened, run top to bottom, its widgets driven
with the mouse and keyboard (attention explorer: chapter 3; KV-cache calculator: 8; sampling explorer: 11),
and a run-and-saved chapter reopened with no kernel still showing its figures."""

import json
import shutil

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from course.viz.heatmap import MASK_GREY
from course.viz.kv_calculator import GIB, KVShape, kv_figures

from .conftest import ARTIFACTS, REPO
from .pages import (
    PLOT,
    Lab,
    cell_rgb,
    data_xy,
    figure,
    hex_rgb,
    hover,
    hover_at,
    point_center,
    set_slider,
    wait_heatmap,
    wait_title,
    wait_title_change,
)

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("jupyterlab")]
CHAPTERS = REPO / "notebooks"
ATTENTION = "03-multi-head-attention.ipynb"
KV_CACHE = "08-complexity-and-memory.ipynb"
SAMPLING = "11-inference.ipynb"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
PLOTLY_JSON = "application/vnd.plotly.v1+json"


def open_and_run(lab: Lab, chapter: str) -> None:
    shutil.copy(CHAPTERS / chapter, lab.server.root / chapter)
    lab.open(chapter)
    lab.run_all()


@pytest.fixture(scope="session")  # session: xdist may interleave other modules between its two users
def attention_chapter(browser, lab_server):
    """Chapter 3 opened in Lab, run top to bottom and saved: its Lab page, kernel still running."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    context.set_default_timeout(60_000)
    lab = Lab(context.new_page(), lab_server)
    try:
        open_and_run(lab, ATTENTION)
        lab.save()
        yield lab
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        lab.page.screenshot(path=ARTIFACTS / "attention-chapter.png")
        context.close()


def test_attention_explorer_in_chapter(attention_chapter):
    lab = attention_chapter
    out = lab.output_with(".widget-slider", ".widget-toggle-button", PLOT).filter(has_text="apply mask").first
    plot = wait_heatmap(lab.page, out)
    copies = lab.page.locator(".jp-OutputArea-child:has(+ .jp-OutputArea-child .jupyter-widgets)")
    assert copies.count() > 0, "no static copy before the live widgets"
    for j in range(copies.count()):  # with a kernel, the live view hides its static copy
        copies.nth(j).wait_for(state="hidden", timeout=10_000)
    out.scroll_into_view_if_needed()
    before = figure(plot)
    layer = int(out.locator(".widget-readout").first.inner_text())
    n_layers = (
        int(out.locator(".widget-slider [role=slider]").get_attribute("aria-valuemax").split(".")[0]) + 1
    )
    assert n_layers > 1 and out.locator(".widget-toggle-button").count() > 1

    set_slider(out, (layer + 1) % n_layers)
    title = wait_title_change(plot, before["title"])
    moved = figure(plot)
    assert moved["data"][0]["z"] != before["data"][0]["z"]
    head = out.locator(".widget-toggle-button:not(.mod-active)").first
    head.click()
    wait_title_change(plot, title)
    after = figure(plot)
    assert after["data"][0]["z"] != moved["data"][0]["z"]

    z, labels = after["data"][0]["z"], after["data"][0]["customdata"]
    T = len(z)
    text = hover(plot, 0, T - 1, 1)
    query, key = labels[T - 1][1]
    assert f"query '{query}'" in text and f"key '{key}'" in text and f"{z[T - 1][1]:.3f}" in text, text
    assert z[0][T - 1] is None and after["data"][1]["z"][0][T - 1] is not None  # future key: masked, overlaid
    assert "N/A" in hover(plot, 1, 0, T - 1)
    lab.page.mouse.move(0, 0)
    assert cell_rgb(plot, 0, 0, T - 1) == hex_rgb(MASK_GREY)


def test_reopened_chapter_shows_figures_without_kernel(attention_chapter, lab_server, page):
    saved = lab_server.root / ATTENTION
    (lab_server.root / "reopened").mkdir(exist_ok=True)
    shutil.copy(saved, lab_server.root / "reopened" / ATTENTION)
    nb = json.loads(saved.read_text())
    data = [
        (i, k, o.get("data", {}))
        for i, cell in enumerate(nb["cells"])
        for k, o in enumerate(cell.get("outputs", []))
    ]
    figures = [(i, k) for i, k, d in data if PLOTLY_JSON in d]
    live = [(i, k) for i, k, d in data if WIDGET_VIEW in d]
    assert figures and live, "the run chapter saved no figure outputs"
    assert all((i, k - 1) in figures for i, k in live), "each live view must follow its own static copy"
    assert "widgets" not in nb["metadata"], "widget state must not be saved"

    lab = Lab(page, lab_server)
    lab.start()
    lab.command(
        "docmanager:open",
        {"path": f"reopened/{ATTENTION}", "kernelPreference": {"shouldStart": False, "canStart": False}},
    )
    page.wait_for_selector(".jp-Notebook .jp-Cell")
    cells = page.locator(".jp-Notebook .jp-Cell")
    for i, k in figures:
        output = cells.nth(i).locator(".jp-OutputArea-output").nth(k)
        try:
            output.locator(f"{PLOT}, img").first.wait_for(timeout=30_000)
        except PlaywrightTimeout:
            pytest.fail(
                f"cell {i}: no figure after reopening without a kernel; it shows {output.inner_text()!r}"
            )
        png = output.locator("img.plot-img")  # jupyterlab-plotly shows the PNG until the mouse enters it
        if png.count() and png.is_visible():
            png.dispatch_event("mouseenter")
    assert page.get_by_text("Error displaying widget").count() == 0
    explorer = cells.locator(".jp-OutputArea-output").filter(has=page.locator(".updatemenu-header-group"))
    explorer.first.locator(
        ".heatmaplayer image"
    ).first.wait_for()  # the explorer's static copy, drawn by plotly
    assert page.evaluate("() => !jupyterapp.shell.currentWidget.sessionContext.session?.kernel")


def chapter_widget(page, server, chapter: str, control: str, text: str):
    """Run a chapter; return (the output holding `control`, a plot and `text`; its plot) once drawn."""
    lab = Lab(page, server)
    open_and_run(lab, chapter)
    out = lab.output_with(control, PLOT).filter(has_text=text).first
    plot = out.locator(PLOT)
    plot.wait_for()
    out.scroll_into_view_if_needed()
    return out, plot


def test_kv_cache_calculator_in_chapter(lab_server, page):
    out, plot = chapter_widget(page, lab_server, KV_CACHE, ".widget-dropdown", "KVCache.for_model")
    dtype = out.locator(".widget-dropdown").filter(has_text="dtype").locator("select").input_value()
    wait_title(plot, kv_figures(KVShape.from_preset("llama2-70b", dtype=dtype)).title)  # drawn, as created

    out.locator(".widget-dropdown").filter(has_text="preset").locator("select").select_option("gpt2-small")
    want = kv_figures(KVShape.from_preset("gpt2-small", dtype=dtype))
    wait_title(plot, want.title)
    assert figure(plot)["data"][0]["y"] == want.gib

    # the sequence length moves in powers of two: one arrow key from gpt2-small's 1,024 is 2,048
    seq = out.locator(".widget-slider").filter(has_text="seq len")
    assert seq.locator(".widget-readout").inner_text() == "1,024"
    seq.locator("[role=slider]").focus()
    seq.locator("[role=slider]").press("ArrowRight")
    shape = KVShape.from_preset("gpt2-small", seq_len=2048, dtype=dtype)
    wait_title(plot, kv_figures(shape).title)
    now = figure(plot)["data"][2]
    assert now["x"] == [2048] and now["y"] == [round(shape.nbytes() / GIB, 6)]
    text = hover_at(plot, *data_xy(plot, 2, now["x"][0], now["y"][0]))
    assert "2,048 tokens" in text and f"{shape.nbytes() / GIB:.3f} GiB" in text, text
    assert "equal" in out.inner_text() and "DIFFERENT" not in out.inner_text()


def test_sampling_explorer_in_chapter(lab_server, page):
    out, plot = chapter_widget(page, lab_server, SAMPLING, ".widget-slider", "temperature")
    start = figure(plot)
    base = start["data"][0]["y"]
    assert start["data"][1]["y"] == base  # temperature 1, no filter: the sampler draws from the model

    set_slider(out.locator(".widget-slider").filter(has_text="top-k"), 3)
    title = wait_title_change(plot, start["title"])
    probs = figure(plot)["data"][1]["y"]
    assert not any(probs[3:]) and abs(sum(probs[:3]) - 1) < 1e-3, probs  # renormalised over the top 3
    assert figure(plot)["data"][2]["x"] == list(range(3, len(base)))  # crosses on the removed tokens

    set_slider(out.locator(".widget-slider").filter(has_text="temperature"), 0)
    wait_title_change(plot, title)
    probs = figure(plot)["data"][1]["y"]
    assert probs[0] == 1 and not any(probs[1:])  # greedy
    token = start["data"][1]["customdata"][0]
    text = hover_at(plot, *point_center(plot, "bar", 1, 0))
    assert f"'{token}'" in text and "1.000" in text, text
