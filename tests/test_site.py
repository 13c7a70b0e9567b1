"""`course site`: executed chapters rendered to static HTML that shows its figures offline (no CDN, no widget
JS)."""

from __future__ import annotations

import base64
import re

import nbformat
import pytest

from course import site

CDN_SOURCE = re.compile(
    r"""<(?:script|link|img|iframe)\b[^>]*\b(?:src|href)\s*=\s*["']?(?:https?:)?//""", re.IGNORECASE
)
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
VIEW = {"model_id": "abc", "version_major": 2, "version_minor": 0}


def figure_json(z) -> dict:
    return {"data": [{"type": "heatmap", "z": z}], "layout": {"title": {"text": "a heatmap"}}}


def display(data: dict) -> nbformat.NotebookNode:
    return nbformat.v4.new_output("display_data", data=data)


def notebook(*outputs) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell("show()")
    cell.outputs = list(outputs)
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A chapter\n\ntext"), cell])


def assert_offline(page: str) -> None:
    bad = CDN_SOURCE.findall(page)
    assert not bad, f"the page loads from the network: {bad[:3]}"
    assert site.WIDGET_VIEW not in page, "a live widget view was left in a static page"
    assert "require.js" not in page and "mathjax" not in page.lower()


def test_widget_bundle_falls_back_to_its_plotly_figure():
    z = [[0.25, None], [0.5, 0.5]]
    bundle = site.static_bundle(
        {site.WIDGET_VIEW: VIEW, site.PLOTLY_JSON: figure_json(z), "image/png": PNG, "text/plain": "<Widget>"}
    )
    assert list(bundle) == ["text/html"]
    assert "Plotly.newPlot" in bundle["text/html"] and "a heatmap" in bundle["text/html"]


def test_widget_bundle_without_plotly_keeps_its_png():
    bundle = site.static_bundle({site.WIDGET_VIEW: VIEW, "image/png": PNG, "text/plain": "<Widget>"})
    assert site.WIDGET_VIEW not in bundle and bundle["image/png"] == PNG


def test_widget_without_any_fallback_is_dropped_but_text_outputs_stay():
    nb = site.make_static(
        notebook(
            display({site.WIDGET_VIEW: VIEW, "text/plain": "VBox(...)"}),
            nbformat.v4.new_output("stream", name="stdout", text="42\n"),
            display({"text/plain": "plain result"}),
        )
    )
    outputs = nb.cells[1].outputs
    assert [o.output_type for o in outputs] == ["stream", "display_data"]
    assert outputs[1].data == {"text/plain": "plain result"}


@pytest.mark.parametrize("kind", ["plotly", "png"])
def test_rendered_page_shows_the_fallback_offline(kind):
    data = {site.WIDGET_VIEW: VIEW, "text/plain": "<Widget>", "image/png": PNG}
    if kind == "plotly":
        data[site.PLOTLY_JSON] = figure_json([[1, 2], [3, 4]])
    page = site.render(notebook(display(data)), nav='<a href="index.html">All chapters</a>')
    assert_offline(page)
    assert f'<script src="{site.PLOTLY_JS}"></script>' in page
    if kind == "plotly":
        assert page.count('class="plotly-graph-div"') == 1
    else:
        assert f"data:image/png;base64,{PNG}" in page


def test_only_filters_chapters_and_rejects_unknown_names():
    assert [p.name for p in site.chapters(["06"])] == ["06-encoder-decoder-forms.ipynb"]
    with pytest.raises(ValueError, match="matches no notebook"):
        site.chapters(["99-no-such-chapter"])


@pytest.mark.slow
def test_course_site_renders_an_executed_chapter(tmp_path):
    """The real command on one chapter: executed, every figure present, plotly.js local, nothing from a
    CDN."""
    from course.cli import main

    assert main(["site", "--out", str(tmp_path), "--only", "06", "--jobs", "1"]) == 0
    page = (tmp_path / "06-encoder-decoder-forms.html").read_text(encoding="utf-8")
    assert_offline(page)
    assert (tmp_path / site.PLOTLY_JS).stat().st_size > 1_000_000, (
        "plotly.js was not written beside the pages"
    )
    # Chapter 6 draws the mask of each of its five forms, plus the mask builder's static fallback.
    n_figures = page.count('class="plotly-graph-div"')
    assert n_figures >= 6, f"expected every mask figure of chapter 6 on the page, found {n_figures}"
    assert 'data-mime-type="application/vnd.jupyter.stderr"' not in page and "Traceback" not in page
    index = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert 'href="06-encoder-decoder-forms.html"' in index
    assert_offline(index)


def test_offline_check_flags_cdn_sources():
    for tag in (
        '<script src="https://cdn.jsdelivr.net/npm/plotly.js"></script>',
        "<link rel='stylesheet' href='//fonts.example.org/a.css'>",
    ):
        with pytest.raises(AssertionError, match="loads from the network"):
            assert_offline(tag)
