"""Attention explorer: every layer and head of a course model on your tokens, stage by stage.

    from course.viz import AttentionExplorer
    AttentionExplorer(model, tokens, labels).show()   # model: DecoderLM / EncoderLM; tokens: ids (T,);
    labels: T str

Controls: layer slider, head buttons, stage (scores -> masked -> softmax), "apply mask" (off shows what
attention would do without the mask). Left: the selected head — keys on x, queries on y, hover "query 'tok'
(i) -> key 'tok' (j): 0.193"; masked cells are grey "N/A" (their score is -inf, their weight 0: never drawn as
0). Right: all layers × heads as one heatmap (with the mask or without it, like the left; masked cells grey);
click a tile to select that (layer, head). A model with one layer or one head shows no layer slider or head
buttons. `to_static()` is a plain `go.Figure` with layer/head dropdowns (softmax weights), usable offline.
From arrays instead of a model: `AttentionExplorer.from_view(AttentionView(scores, allowed, labels))`. One
figure widget per explorer (~5 MB of JavaScript each): reuse one explorer rather than creating many.
"""

from __future__ import annotations

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from .attention_view import STAGES, AttentionView
from .heatmap import BACKGROUND, PROB_SCALE, hover_grid, main_trace, overlay_trace, overlay_z, ticks
from .static import cells, grid
from .widget import CourseWidget, figure_widget

MAX_TILE = 32  # overview tiles are mean-pooled to at most 32×32 cells
MAX_SAVED_CELLS = 40_000  # above L·H·T_q·T_k cells, a saved notebook keeps the current view, not every head
SPLIT = 0.52  # the selected head uses the left 52% of the figure, the overview the right part
TILE_HOVER = "click to show this head<extra></extra>"


class AttentionExplorer(CourseWidget):
    def __init__(self, model, tokens, labels=None, **forward_kwargs):
        self._build(AttentionView.from_model(model, tokens, labels, **forward_kwargs))

    @classmethod
    def from_view(cls, view: AttentionView) -> AttentionExplorer:
        explorer = cls.__new__(cls)
        explorer._build(view)
        return explorer

    def _build(self, view: AttentionView) -> None:
        super().__init__()
        self.attention = view
        self.layer = widgets.IntSlider(
            0, min=0, max=view.n_layers - 1, description="layer", continuous_update=False
        )
        self.head = widgets.ToggleButtons(
            options=[(f"H{h}", h) for h in range(view.n_heads)],
            value=0,
            description="head",
            style={"button_width": "44px"},
        )
        self.stage = widgets.Dropdown(
            options=[(label, key) for key, label in STAGES.items()], value="softmax", description="stage"
        )
        self.mask = widgets.Checkbox(True, description="apply mask", indent=False)
        for control, n in ((self.layer, view.n_layers), (self.head, view.n_heads)):
            control.layout.display = None if n > 1 else "none"  # a 0–0 slider or one button changes nothing
        self.fig = figure_widget(self._figure())
        for tiles in self.fig.data[2:]:  # a click on a masked (grey) cell selects its head too
            tiles.on_click(self.guarded(self._on_tile_click))
        for control in (self.layer, self.head, self.stage, self.mask):
            self.on_change(control)
        self.view = widgets.VBox(
            [widgets.HBox([self.layer, self.stage, self.mask]), self.head, self.fig, self.output]
        )

    def _figure(self) -> go.Figure:
        v = self.attention
        hm = v.heatmap(0, 0, "softmax")
        self._shown_allowed, self._shown_masked = hm.allowed, True
        custom = hover_grid(v.q_labels, v.k_labels)
        x_ticks, y_ticks = v.tile_centres(MAX_TILE)
        x0, x1, y0, y1 = v.tile_box(0, 0, MAX_TILE)
        fig = go.Figure(
            [
                main_trace(
                    cells(hm.z),
                    custom,
                    hm.zmin,
                    hm.zmax,
                    hm.colorscale,
                    name="selected head",
                    colorbar=dict(x=SPLIT + 0.01, len=0.9),
                ),
                overlay_trace(hm.allowed, custom),
                dict(
                    type="heatmap",
                    z=cells(v.overview(MAX_TILE)),
                    zmin=0,
                    zmax=1,
                    colorscale=PROB_SCALE,
                    showscale=False,
                    hoverongaps=False,
                    xaxis="x2",
                    yaxis="y2",
                    name="all heads",
                    hovertemplate=TILE_HOVER,
                ),
                overlay_trace(
                    ~self._overview_masked(True),
                    None,
                    xaxis="x2",
                    yaxis="y2",
                    name="all heads, masked",
                    hovertemplate=TILE_HOVER,
                ),
            ]
        )
        fig.update_layout(
            title=dict(text=hm.title),
            width=980,
            height=520,
            plot_bgcolor=BACKGROUND,
            margin=dict(l=90, r=20, t=60, b=90),
            xaxis=dict(domain=[0, SPLIT], title="key (attended to)", **ticks(v.k_labels)),
            yaxis=dict(autorange="reversed", title="query", **ticks(v.q_labels)),
            xaxis2=dict(  # no grid lines: at the tick positions (tile centres) they would cross the tiles
                domain=[SPLIT + 0.12, 1],
                anchor="y2",
                showgrid=False,
                zeroline=False,
                tickmode="array",
                tickvals=x_ticks,
                ticktext=[f"H{h}" for h in range(v.n_heads)],
                title="all heads (click one)",
            ),
            yaxis2=dict(
                anchor="x2",
                autorange="reversed",
                showgrid=False,
                zeroline=False,
                tickmode="array",
                tickvals=y_ticks,
                ticktext=[f"L{layer}" for layer in range(v.n_layers)],
            ),
            shapes=[
                dict(
                    type="rect",
                    xref="x2",
                    yref="y2",
                    x0=x0,
                    x1=x1,
                    y0=y0,
                    y1=y1,
                    line=dict(color="crimson", width=2),
                )
            ],
        )
        return fig

    def _overview_masked(self, masked: bool) -> np.ndarray:
        """The overview cells drawn grey: inside a tile and masked (none with the mask off)."""
        v = self.attention
        return v.in_tiles(MAX_TILE) & np.isnan(v.overview(MAX_TILE, masked))

    # --- callbacks
    def select(self, layer: int, head: int) -> None:
        """Show (layer, head): sets both controls, redraws once."""
        self.attention.check(layer, head)
        with self.muted():
            self.layer.value, self.head.value = layer, head

    def _on_tile_click(self, trace, points, state) -> None:
        if not points.point_inds:
            return
        row, col = points.point_inds[0]
        tile = self.attention.tile_at(row, col, MAX_TILE)
        if tile is not None:
            self.select(*tile)

    def refresh(self) -> None:
        layer, head = self.layer.value, self.head.value
        hm = self.attention.heatmap(layer, head, self.stage.value, self.mask.value)
        x0, x1, y0, y1 = self.attention.tile_box(layer, head, MAX_TILE)
        main, overlay = self.fig.data[0], self.fig.data[1]
        with self.fig.batch_update():
            main.update(z=cells(hm.z), zmin=hm.zmin, zmax=hm.zmax, colorscale=hm.colorscale)
            if not np.array_equal(hm.allowed, self._shown_allowed):  # the grey cells changed
                overlay.z = overlay_z(hm.allowed)
                self._shown_allowed = hm.allowed
            if self.mask.value != self._shown_masked:  # the overview with or without the mask
                tiles, grey = self.fig.data[2], self.fig.data[3]
                tiles.z = cells(self.attention.overview(MAX_TILE, self.mask.value))
                grey.z = overlay_z(~self._overview_masked(self.mask.value))
                self._shown_masked = self.mask.value
            self.fig.layout.title.text = hm.title
            self.fig.layout.shapes[0].update(x0=x0, x1=x1, y0=y0, y1=y1)

    # --- static
    # ------------------------------------------------------------------------------------------------
    def static_figure(self) -> go.Figure:
        """Every head with dropdowns when small (< MAX_SAVED_CELLS cells), else the current view only."""
        v = self.attention
        if v.n_layers * v.n_heads * v.T_q * v.T_k <= MAX_SAVED_CELLS:
            return self.to_static()
        return go.Figure(self.fig)

    def to_static(self) -> go.Figure:
        """Softmax weights of every (layer, head) with two dropdowns; no kernel, no callbacks needed.

        Traces 0..H-1: head h of the shown layer (one visible); H..2H-1: their masked-cell overlays. The layer
        menu restyles the z of all of them, the head menu their visibility, so the two menus compose.
        """
        v = self.attention
        H = v.n_heads
        custom = hover_grid(v.q_labels, v.k_labels)

        def layer_z(layer):
            maps = [v.heatmap(layer, h, "softmax") for h in range(H)]
            return [grid(m.z) for m in maps] + [overlay_z(m.allowed).tolist() for m in maps]

        z0 = layer_z(0)
        traces = [
            main_trace(z0[h], custom, 0.0, 1.0, PROB_SCALE, visible=h == 0, name=f"H{h}") for h in range(H)
        ]
        traces += [
            dict(overlay_trace(np.ones((v.T_q, v.T_k)), custom), z=z0[H + h], visible=h == 0)
            for h in range(H)
        ]
        layer_menu = dict(
            buttons=[
                dict(
                    label=f"layer {layer}", method="restyle", args=[{"z": layer_z(layer)}, list(range(2 * H))]
                )
                for layer in range(v.n_layers)
            ],
            x=0.0,
            y=1.12,
            xanchor="left",
        )
        head_menu = dict(
            buttons=[
                dict(
                    label=f"head {h}",
                    method="restyle",
                    args=[{"visible": [k == h for k in range(H)] * 2}, list(range(2 * H))],
                )
                for h in range(H)
            ],
            x=0.25,
            y=1.12,
            xanchor="left",
        )
        fig = go.Figure(traces)
        fig.update_layout(
            title=dict(text="Attention weights (softmax): choose a layer and a head", y=0.98),
            width=640,
            height=620,
            plot_bgcolor=BACKGROUND,
            updatemenus=[layer_menu, head_menu],
            margin=dict(l=90, r=20, t=110, b=90),
            xaxis=dict(title="key (attended to)", **ticks(v.k_labels)),
            yaxis=dict(autorange="reversed", title="query", **ticks(v.q_labels)),
        )
        return fig
