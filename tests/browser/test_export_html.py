"""`course export-html`: the page opens from disk with the network cut, sends no request, its layer and head
menus switch what is drawn (checked against the view model), hover reads query, key and weight, masked cells
are empty in the data and drawn grey; at 1440×900 the figure uses the page's width and plotly's toolbar covers
neither the title nor the menus."""

import subprocess
import sys

import pytest

from course.viz.app import DEFAULT_MODEL, load_prompt
from course.viz.attention_view import AttentionView
from course.viz.heatmap import MASK_GREY
from course.viz.static import grid

from .pages import PLOT, background_rgb, cell_rgb, cell_xy, choose, hex_rgb, hover, visible_traces

pytestmark = pytest.mark.browser
SAME_Z = """([gd, i, want]) => gd.data[i].z.every((row, r) => row.every((z, c) =>
  z === null ? want[r][c] === null : want[r][c] !== null && Math.abs(z - want[r][c]) < 1e-9))"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "attention.html"
    done = subprocess.run(
        [sys.executable, "-m", "course", "export-html", "--out", str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def reference():
    """What the page must show, from the view model: (view, token labels)."""
    model, _, ids, labels = load_prompt(DEFAULT_MODEL)
    return AttentionView.from_model(model, ids, labels)


def test_export_html_works_offline(exported, reference, page):
    requested = []

    def gate(route):
        requested.append(route.request.url)
        route.continue_() if route.request.url.startswith("file://") else route.abort()

    page.route("**/*", gate)
    page.context.set_offline(True)
    page.goto(exported.as_uri())
    plot = page.locator(PLOT)
    plot.locator(".heatmaplayer image").first.wait_for()
    v, H = reference, reference.n_heads
    assert v.n_layers > 1 and H > 1, "the default model must have several layers and heads to choose from"

    assert visible_traces(plot) == [0, H]  # head 0 and its mask overlay
    layer, head = v.n_layers - 1, H - 1
    choose(page, 1, f"head {head}")
    page.wait_for_function("([gd, i]) => gd.data[i].visible === true", arg=[plot.element_handle(), head])
    assert visible_traces(plot) == [head, H + head]
    choose(page, 0, f"layer {layer}")
    want = grid(v.heatmap(layer, head, "softmax").z)
    page.wait_for_function(SAME_Z, arg=[plot.element_handle(), head, want])

    T = v.T_q
    row, col = T - 1, T // 2
    text = hover(plot, head, row, col)
    assert v.q_labels[row] in text and v.k_labels[col] in text, text
    assert f"{want[row][col]:.3f}" in text, text

    assert want[0][T - 1] is None  # a future key of query 0: masked
    assert "N/A" in hover(plot, H + head, 0, T - 1)
    page.mouse.move(0, 0)
    assert cell_rgb(plot, head, 0, T - 1) == hex_rgb(MASK_GREY) != background_rgb(plot)
    assert requested and all(url.startswith("file://") for url in requested), requested


OVERLAP_JS = """([a, b]) => { const r = a.getBoundingClientRect(), s = b.getBoundingClientRect();
  return r.left < s.right && s.left < r.right && r.top < s.bottom && s.top < r.bottom; }"""


def test_export_html_uses_the_width_and_the_toolbar_covers_nothing(exported, page):
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(exported.as_uri())
    plot = page.locator(PLOT)
    plot.locator(".heatmaplayer image").first.wait_for()
    assert plot.bounding_box()["width"] >= 0.9 * 1440
    page.mouse.move(*cell_xy(plot, 0, 0, 0))  # plotly shows its toolbar while the mouse is over the figure
    toolbar = plot.locator(".modebar")
    toolbar.wait_for()
    covered = [plot.locator(".gtitle")] + [plot.locator(".updatemenu-header-group").nth(i) for i in range(2)]
    for item in covered:
        assert not page.evaluate(OVERLAP_JS, [toolbar.element_handle(), item.element_handle()]), (
            item.text_content()
        )
    assert not page.evaluate(OVERLAP_JS, [covered[0].element_handle(), covered[1].element_handle()])
