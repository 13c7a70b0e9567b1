"""Positional explorer: sinusoidal table, RoPE rotations and the i − j property, ALiBi biases per head.

    from course.viz import PositionalExplorer
    PositionalExplorer().show()               # or PositionalExplorer(mode="rope", T=32, d=16)

Modes (everything computed by `course.positional`):
  sinusoidal  heatmap of the table (positions × dims); PE(p)·PE(j) against j; one pair's sin/cos
              against position
  rope        cos(position·θ_i) per pair; pair i of a vector rotated to each position (a circle);
              RoPE(q, i)·RoPE(k, j) against i − j: every (i, j) with the same i − j gives the same score
  alibi       the bias −slope_h·|i − j| of head h; the slope of every head; the bias against distance
`positional_panels(mode, T, d, index)` is the pure view model ("d" is the number of heads in alibi mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ipywidgets as widgets
import numpy as np
import torch

from .. import positional as pos
from .static import cells
from .widget import CourseWidget, figure_widget

MODES = {"sinusoidal": "sinusoidal", "rope": "RoPE", "alibi": "ALiBi"}


@dataclass
class Panel:
    x: list
    y: list
    x_title: str
    y_title: str
    text: list = field(default_factory=list)
    mode: str = "lines+markers"


@dataclass
class Panels:
    z: np.ndarray  # heatmap
    z_titles: tuple[str, str]  # (x title, y title)
    zmin: float
    zmax: float
    colorscale: str
    top: Panel
    bottom: Panel
    title: str


def _rope_score_spread(T: int, d: int, theta: float = 10000.0) -> tuple[list, list, float]:
    """RoPE(q, i)·RoPE(k, j) for all i, j < T: (i − j values, scores, largest spread among equal i − j)."""
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
    cos, sin = pos.rope_angles(T, d, theta)
    rq = pos.apply_rope(q.expand(1, 1, T, d), cos.double(), sin.double())[0, 0]  # (T, d) q at every position
    rk = pos.apply_rope(k.expand(1, 1, T, d), cos.double(), sin.double())[0, 0]
    scores = (rq @ rk.T).numpy()  # (T_i, T_j)
    diff = np.subtract.outer(np.arange(T), np.arange(T))
    spread = max(np.ptp(scores[diff == r]) for r in range(-T + 1, T))
    return diff.ravel().tolist(), np.round(scores.ravel(), 4).tolist(), float(spread)


def positional_panels(mode: str, T: int, d: int, index: int = 0) -> Panels:
    """What each panel shows for a mode; `index` is a feature pair (sinusoidal, rope) or a head (alibi)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {list(MODES)}")
    n_index = d if mode == "alibi" else d // 2
    if not 0 <= index < n_index:
        raise ValueError(f"index={index} is out of range for mode={mode!r}, d={d}: expected 0..{n_index - 1}")
    positions = list(range(T))
    if mode == "sinusoidal":
        table = pos.sinusoidal_table(T, d).double().numpy()  # (T, d)
        p = T // 2
        return Panels(
            table,
            ("dimension", "position"),
            -1.0,
            1.0,
            "RdBu_r",
            Panel(positions, np.round(table @ table[p], 4).tolist(), "position j", f"PE({p})·PE(j)"),
            Panel(
                positions,
                np.round(table[:, 2 * index], 4).tolist(),
                "position",
                f"PE[:, {2 * index}] = sin(pos·ω_{index})",
            ),
            f"Sinusoidal positions (T={T}, d={d}): PE({p})·PE(j) peaks at j = {p} and depends on |{p} − j|",
        )
    if mode == "rope":
        cos, sin = pos.rope_angles(T, d)
        vec = torch.zeros(1, 1, T, d, dtype=torch.float64)
        vec[..., index] = 1.0  # split-half pair i = (x[i], x[i + d/2])
        rot = pos.apply_rope(vec, cos.double(), sin.double())[0, 0]
        diff, scores, spread = _rope_score_spread(T, d)
        return Panels(
            cos.double().numpy(),
            ("feature pair i", "position"),
            -1.0,
            1.0,
            "RdBu_r",
            Panel(
                np.round(rot[:, index], 4).tolist(),
                np.round(rot[:, index + d // 2], 4).tolist(),
                f"pair {index}: x[{index}]",
                f"x[{index + d // 2}]",
                [f"position {m}" for m in positions],
                mode="markers",
            ),
            Panel(diff, scores, "i − j", "RoPE(q, i)·RoPE(k, j)", mode="markers"),
            f"RoPE (T={T}, d_head={d}): pair {index} turns by θ_{index} per position; "
            f"scores at equal i − j differ by at most {spread:.1e}",
        )
    bias = pos.alibi_bias(d, T, T).double().numpy()  # (H, T, T)
    slopes = pos.alibi_slopes(d).double().numpy()
    return Panels(
        # each head's own colour range: with one shared range the flat heads (small slopes) look blank
        bias[index],
        ("key j", "query i"),
        float(bias[index].min()) if T > 1 else -1.0,
        0.0,
        "Blues_r",
        Panel(list(range(d)), slopes.tolist(), "head", "slope", mode="markers"),
        Panel(
            positions,
            np.round(-slopes[index] * np.arange(T), 4).tolist(),
            "distance |i − j|",
            f"bias of head {index}",
        ),
        f"ALiBi ({d} heads): head {index} adds −{slopes[index]:.4g}·|i − j| to its scores",
    )


def controls(mode: str, d: int) -> tuple[str, str, int]:
    """(index label, d label, largest index) of a mode: feature pairs 0..d/2-1, or ALiBi heads 0..d-1."""
    if mode == "alibi":
        return "head", "heads", d - 1
    return "pair", "d", d // 2 - 1


class PositionalExplorer(CourseWidget):
    def __init__(self, mode: str = "sinusoidal", T: int = 32, d: int = 16):
        super().__init__()
        self.mode = widgets.ToggleButtons(options=[(v, k) for k, v in MODES.items()], value=mode)
        self.T = widgets.IntSlider(T, min=2, max=128, description="T", continuous_update=False)
        index_label, d_label, top = controls(mode, d)
        self.d = widgets.Dropdown(options=[4, 8, 16, 32, 64, 128], value=d, description=d_label)
        self.index = widgets.IntSlider(0, min=0, max=top, description=index_label, continuous_update=False)
        self.fig = figure_widget()
        self.fig.add_heatmap(
            hovertemplate="x %{x}, y %{y}: %{z:.3f}<extra></extra>", colorbar=dict(x=0.44, thickness=14)
        )
        self.fig.add_scatter(
            xaxis="x2",
            yaxis="y2",
            hovertemplate="%{x}, %{y}<extra>%{text}</extra>",
            marker=dict(colorscale="Viridis", size=7),
        )
        self.fig.add_scatter(xaxis="x3", yaxis="y3", marker_size=5, hovertemplate="%{x}: %{y}<extra></extra>")
        self.fig.update_layout(
            width=980,
            height=540,
            showlegend=False,
            xaxis=dict(domain=[0, 0.42]),
            yaxis=dict(autorange="reversed"),
            xaxis2=dict(domain=[0.64, 1], anchor="y2"),
            yaxis2=dict(domain=[0.58, 1], anchor="x2"),
            xaxis3=dict(domain=[0.64, 1], anchor="y3"),
            yaxis3=dict(domain=[0, 0.4], anchor="x3"),
        )
        self.refresh()
        self.on_change(self.mode, self._on_shape)
        self.on_change(self.d, self._on_shape)
        self.on_change(self.T)
        self.on_change(self.index)
        self.view = widgets.VBox(
            [self.mode, widgets.HBox([self.T, self.d, self.index]), self.fig, self.output]
        )

    def _on_shape(self, change) -> None:
        with self.muted():
            self.index.description, self.d.description, self.index.max = controls(
                self.mode.value, self.d.value
            )

    def refresh(self) -> None:
        p = positional_panels(self.mode.value, self.T.value, self.d.value, self.index.value)
        layout = self.fig.layout
        with self.fig.batch_update():
            self.fig.data[0].update(z=cells(p.z), zmin=p.zmin, zmax=p.zmax, colorscale=p.colorscale)
            self.fig.data[1].update(
                x=p.top.x,
                y=p.top.y,
                text=p.top.text or None,
                mode=p.top.mode,
                marker_color=list(range(len(p.top.x))),
            )
            # 1-D float arrays travel as binary buffers (T² points of q·k at T = 128)
            self.fig.data[2].update(
                x=np.asarray(p.bottom.x, dtype=np.float32),
                y=np.asarray(p.bottom.y, dtype=np.float32),
                mode=p.bottom.mode,
            )
            # the rotation of a pair is a circle only with equal axis scales
            layout.yaxis2.update(scaleanchor="x2" if self.mode.value == "rope" else None)
            layout.title.text = p.title
            layout.xaxis.title.text, layout.yaxis.title.text = p.z_titles
            layout.xaxis2.title.text, layout.yaxis2.title.text = p.top.x_title, p.top.y_title
            layout.xaxis3.title.text, layout.yaxis3.title.text = p.bottom.x_title, p.bottom.y_title
