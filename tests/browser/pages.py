"""What the browser tests do to a page: drive JupyterLab (open, wait for the kernel, run, save) and read a
plotly figure as a person sees it (its data, its hover label, the colour of one of its cells)."""

from __future__ import annotations

import struct
import zlib

# ---------------------------------------------------------------------------------------------- JupyterLab

CURRENT = "jupyterapp.shell.currentWidget"
KERNEL_IDLE = f"() => {CURRENT}?.sessionContext?.session?.kernel?.status === 'idle'"
NO_KERNEL = f"() => !{CURRENT}.sessionContext.session?.kernel"
ERROR_OUTPUTS = (
    "[data-mime-type='application/vnd.jupyter.stderr'], [data-mime-type='application/vnd.jupyter.error']"
)


class Lab:
    """One JupyterLab page: `Lab(page, server).open("nb.ipynb")`, then `.run_all()`."""

    def __init__(self, page, server):
        self.page, self.server = page, server

    def start(self, url_path: str = "lab") -> None:
        """Load Lab in a reset workspace (no tab restored) and wait until it has finished restoring its
        layout."""
        self.page.goto(f"{self.server.url}/{url_path}?reset")
        self.page.wait_for_function("() => window.jupyterapp")
        self.page.evaluate("() => jupyterapp.restored.then(() => true)")
        # Drop "?reset" from the address: an in-page link (nbgrader's href="#...") would otherwise load the
        # reset route again, which closes every panel (the assignment list with it).
        self.page.evaluate("() => history.replaceState(history.state, '', location.pathname)")

    def open(self, path: str) -> None:
        """Open a notebook in a fresh Lab and wait until Lab shows its cells."""
        self.start(f"lab/tree/{path}")
        self.page.wait_for_function(f"p => {CURRENT}?.context?.path === p", arg=path)
        self.page.wait_for_selector(".jp-Notebook .jp-Cell")

    def wait_kernel_idle(self) -> None:
        self.page.wait_for_function(KERNEL_IDLE, timeout=90_000)

    def command(self, name: str, args: dict | None = None):
        """Run a Lab command and wait for the promise it returns."""
        return self.page.evaluate("([n, a]) => jupyterapp.commands.execute(n, a)", [name, args or {}])

    def run_all(self) -> None:
        """Run every cell (waits until the last one has finished) and fail on any error or stderr output."""
        self.wait_kernel_idle()
        self.command("notebook:run-all-cells")
        self.wait_kernel_idle()
        errors = self.page.locator(ERROR_OUTPUTS)
        assert errors.count() == 0, f"error or stderr output: {errors.first.text_content()[:2000]}"

    def save(self) -> None:
        self.command("docmanager:save")
        self.page.wait_for_function(f"() => !{CURRENT}.context.model.dirty")

    def shutdown_kernel(self) -> None:
        self.page.evaluate(f"() => {CURRENT}.sessionContext.shutdown()")
        self.page.wait_for_function(NO_KERNEL)

    def output_with(self, *selectors: str):
        """The one cell output that contains every selector (e.g. a slider and a plot)."""
        loc = self.page.locator(".jp-OutputArea-output")
        for s in selectors:
            loc = loc.filter(has=self.page.locator(s))
        return loc


# ------------------------------------------------------------------------------------------------- plotly

PLOT = ".js-plotly-plot"
FIGURE_JS = """gd => ({
  data: gd.data.map(t => ({type: t.type, name: t.name ?? null, visible: t.visible ?? true,
                           z: t.z ?? null, x: t.x ?? null, y: t.y ?? null,
                           customdata: t.customdata ?? null})),
  title: gd._fullLayout.title?.text ?? '',
  plot_bgcolor: gd._fullLayout.plot_bgcolor,
})"""
# Page coordinates of cell (row, col) of trace `i` of a heatmap (x value = x[col], or col), `f` of a cell
# right of and below its centre.
CELL_XY_JS = """(gd, [i, row, col, f]) => {
  const t = gd._fullData[i], xa = gd._fullLayout[t.xaxis.replace('x', 'xaxis')],
        ya = gd._fullLayout[t.yaxis.replace('y', 'yaxis')], box = gd.getBoundingClientRect();
  const xv = t.x ? t.x[col] : col, yv = t.y ? t.y[row] : row;
  const dx = f * Math.abs(xa.l2p(1) - xa.l2p(0)), dy = f * Math.abs(ya.l2p(1) - ya.l2p(0));
  return [box.left + xa._offset + xa.l2p(xa.d2l(xv)) + dx, box.top + ya._offset + ya.l2p(ya.d2l(yv)) + dy];
}"""


def wait_heatmap(page, root=None, timeout: float = 90_000):
    """Wait until a heatmap is drawn under `root` (default: the page) and return its plot; fail at once with
    the text of an error or stderr output if one shows up first."""
    root = root or page
    drawn = root.locator(f"{PLOT}:has(.heatmaplayer image)")
    drawn.or_(page.locator(ERROR_OUTPUTS)).first.wait_for(timeout=timeout)
    errors = page.locator(ERROR_OUTPUTS)
    assert errors.count() == 0, f"error output: {errors.first.text_content()[:3000]}"
    return drawn.first


# Page coordinates of the data point (x, y) on the axes of trace `i` (log axes included).
DATA_XY_JS = """(gd, [i, x, y]) => {
  const t = gd._fullData[i], xa = gd._fullLayout[t.xaxis.replace('x', 'xaxis')],
        ya = gd._fullLayout[t.yaxis.replace('y', 'yaxis')], box = gd.getBoundingClientRect();
  return [box.left + xa._offset + xa.l2p(xa.d2l(x)), box.top + ya._offset + ya.l2p(ya.d2l(y))];
}"""


def data_xy(plot, trace: int, x, y) -> tuple[float, float]:
    px, py = plot.evaluate(DATA_XY_JS, [trace, x, y])
    return px, py


def figure(plot) -> dict:
    """Data (type, name, visible, z, x, y, customdata per trace), title and plot background of a plot."""
    return plot.evaluate(FIGURE_JS)


def visible_traces(plot) -> list[int]:
    return [i for i, t in enumerate(figure(plot)["data"]) if t["visible"] is True]


def cell_xy(plot, trace: int, row: int, col: int, f: float = 0.0) -> tuple[float, float]:
    x, y = plot.evaluate(CELL_XY_JS, [trace, row, col, f])
    return x, y


def cell_rgb(plot, trace: int, row: int, col: int) -> tuple[int, int, int]:
    """The colour drawn inside a heatmap cell (sampled off-centre, clear of grid lines through the centre)."""
    return pixel(plot.page, *cell_xy(plot, trace, row, col, 0.25))


def hover(plot, trace: int, row: int, col: int) -> str:
    """Move the mouse over a heatmap cell and return the text of the hover label that appears."""
    return hover_at(plot, *cell_xy(plot, trace, row, col))


def pixel(page, x: float, y: float) -> tuple[int, int, int]:
    """The RGB colour a person sees at page point (x, y), from a 1×1 screenshot."""
    png = page.screenshot(clip={"x": int(x), "y": int(y), "width": 1, "height": 1})
    pos, idat, color_type = 8, b"", None
    while pos < len(png):
        (n,), kind = struct.unpack(">I", png[pos : pos + 4]), png[pos + 4 : pos + 8]
        body = png[pos + 8 : pos + 8 + n]
        if kind == b"IHDR":
            color_type = body[9]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)  # one row: filter byte, then the pixel (every filter is the identity on 1×1)
    assert color_type in (2, 6), f"unexpected PNG colour type {color_type}"
    return tuple(raw[1:4])


def hex_rgb(color: str) -> tuple[int, int, int]:
    """'#c8c8c8' -> (200, 200, 200)."""
    return tuple(int(color.lstrip("#")[i : i + 2], 16) for i in (0, 2, 4))


def background_rgb(plot) -> tuple[int, int, int]:
    """The plot area's background colour as drawn (the fill of the subplot's `.bg` rectangle)."""
    fill = plot.locator(".bglayer .bg").first.evaluate("r => getComputedStyle(r).fill")
    return tuple(int(float(v)) for v in fill[fill.index("(") + 1 : fill.index(")")].split(",")[:3])


def choose(page, menu: int, label: str) -> None:
    """Pick `label` in the `menu`-th dropdown (updatemenu) of a static plotly figure."""
    page.locator(".updatemenu-header-group").nth(menu).click()
    page.locator(".updatemenu-dropdown-button").filter(
        has=page.locator(f"text[data-unformatted='{label}']")
    ).click()


# ------------------------------------------------------------------------------------------------ widgets


def set_slider(root, value) -> None:
    """Type a value into an ipywidgets slider's readout, as a person does, and confirm with Enter."""
    readout = root.locator(".widget-readout").first
    readout.click()
    readout.fill(str(value))
    readout.press("Enter")


def click_toggle(root, label: str) -> None:
    root.locator(".widget-toggle-button").filter(has_text=label).first.click()


def wait_title_change(plot, old: str) -> str:
    """Wait until the plot's title differs from `old` (the kernel answered a control); return the new one."""
    plot.page.wait_for_function(
        "([gd, old]) => (gd._fullLayout.title?.text ?? '') !== old", arg=[plot.element_handle(), old]
    )
    return figure(plot)["title"]


def wait_title(plot, expected: str, timeout: float = 60_000) -> None:
    """Wait until the plot's title is `expected` (a state, not a change: an answer that came early counts)."""
    plot.page.wait_for_function(
        "([gd, want]) => (gd._fullLayout?.title?.text ?? '') === want",
        arg=[plot.element_handle(), expected],
        timeout=timeout,
    )


def point_center(plot, layer: str, trace: int, point: int) -> tuple[float, float]:
    """Page coordinates of the centre of a drawn mark: point `point` of the `trace`-th trace in `layer`
    ("bar" or "scatter")."""
    box = plot.locator(f".{layer}layer .trace").nth(trace).locator(".point").nth(point).bounding_box()
    return box["x"] + box["width"] / 2, box["y"] + box["height"] / 2


def hover_at(plot, x: float, y: float) -> str:
    """Move the mouse to page point (x, y) and return the text of the hover label that appears."""
    plot.page.mouse.move(0, 0)
    plot.page.mouse.move(x, y)
    label = plot.locator(".hoverlayer .hovertext")
    label.first.wait_for(state="attached", timeout=10_000)
    return " ".join(label.first.locator("text").all_text_contents())
