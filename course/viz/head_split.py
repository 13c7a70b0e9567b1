"""Head-split view: how (B, T, D) becomes (B, H, T, d_head), and what a missing transpose does.

    from course.viz import HeadSplitView
    HeadSplitView(T=6, D=12, H=3).show()

Left: the input x (T, D); each cell is coloured by the token it belongs to. Right: the H heads stacked
top to bottom, each (T, d_head), every cell coloured by the token it came from (hover: token and feature).
`course.attention.split_heads` (view to (B, T, H, d_head), then transpose) gives every head all T tokens, one
per row, and d_head consecutive features of each. The bug `x.view(B, H, T, d_head)` (no transpose) fills head
0 with the first T/H tokens' features instead: row i of a head is no longer token i. `split_grid(T, D, H,
correct)` is the pure view model.
"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch

from ..attention import split_heads
from .static import cells
from .widget import CourseWidget, figure_widget

SPLITS = {"correct": "view + transpose (split_heads)", "bug": "view(B, H, T, d_head) — no transpose (bug)"}
TOKEN_SCALE = "Turbo"
INTEGER_TICKS = dict(tickmode="linear", tick0=0, dtick=1)  # tokens and features are whole numbers


@dataclass
class SplitGrid:
    token: np.ndarray  # (H·(T+1) - 1, d_head) source token of each cell, NaN in the gutters between heads
    feature: np.ndarray  # same shape: source feature index
    wrong_rows: int  # head rows i that do not hold exactly token i's features
    title: str


def split_grid(T: int, D: int, H: int, correct: bool = True) -> SplitGrid:
    """Track where every element of x (1, T, D) lands after splitting into H heads (correctly or not)."""
    if D % H:
        raise ValueError(f"D={D} is not divisible by H={H}: each head needs D / H features")
    d = D // H
    x = torch.arange(T * D, dtype=torch.float64).view(1, T, D)  # element t·D + f remembers (t, f)
    heads = split_heads(x, H) if correct else x.view(1, H, T, d)  # (1, H, T, d_head)
    src = heads[0].numpy()
    token, feature = src // D, src % D
    gap = np.full((H, 1, d), np.nan)
    stack = lambda a: np.concatenate([a, gap], axis=1).reshape(H * (T + 1), d)[:-1]  # noqa: E731
    wrong = int((token != np.arange(T)[None, :, None]).any(-1).sum())
    title = (
        f"{SPLITS['correct' if correct else 'bug']}: (1, {T}, {D}) → (1, {H}, {T}, {d})<br>"
        f"{wrong} of {H * T} head rows hold another token's features"
    )
    return SplitGrid(stack(token), stack(feature), wrong, title)


class HeadSplitView(CourseWidget):
    def __init__(self, T: int = 6, D: int = 12, H: int = 3):
        super().__init__()
        self.T = widgets.IntSlider(T, min=1, max=12, description="T", continuous_update=False)
        self.D = widgets.Dropdown(options=[8, 12, 16, 24], value=D, description="D")
        self.H = widgets.Dropdown(options=self._divisors(D), value=H, description="H")
        self.split = widgets.ToggleButtons(
            options=[(v, k) for k, v in SPLITS.items()], value="correct", style={"button_width": "auto"}
        )
        self.fig = figure_widget()
        hover = "token %{customdata[0]}, feature %{customdata[1]}<extra></extra>"
        for axes in (("x", "y"), ("x2", "y2")):
            self.fig.add_heatmap(
                colorscale=TOKEN_SCALE,
                showscale=False,
                hoverongaps=False,
                hovertemplate=hover,
                xaxis=axes[0],
                yaxis=axes[1],
            )
        self.fig.update_layout(
            width=900,
            height=520,
            plot_bgcolor="white",
            xaxis=dict(domain=[0, 0.55], title="feature (D)", **INTEGER_TICKS),
            yaxis=dict(autorange="reversed", title="token (T)", **INTEGER_TICKS),
            xaxis2=dict(
                domain=[0.65, 1], anchor="y2", title="feature within the head (d_head)", **INTEGER_TICKS
            ),
            yaxis2=dict(anchor="x2", autorange="reversed", tickmode="array"),
        )
        self.refresh()
        for control in (self.T, self.H, self.split):
            self.on_change(control)
        self.on_change(self.D, self._on_width)
        self.view = widgets.VBox([widgets.HBox([self.T, self.D, self.H]), self.split, self.fig, self.output])

    @staticmethod
    def _divisors(D: int) -> list[int]:
        return [h for h in range(1, D + 1) if D % h == 0]

    def _on_width(self, change) -> None:
        with self.muted():
            self.H.options = self._divisors(self.D.value)
            self.H.value = min(self.H.options, key=lambda h: abs(h - 4))

    def refresh(self) -> None:
        T, D, H = self.T.value, self.D.value, self.H.value
        sg = split_grid(T, D, H, self.split.value == "correct")
        t_in, f_in = np.divmod(np.arange(T * D).reshape(T, D), D)
        heads_custom = [
            [None if np.isnan(t) else [int(t), int(f)] for t, f in zip(*rows, strict=True)]
            for rows in zip(sg.token, sg.feature, strict=True)
        ]
        with self.fig.batch_update():
            self.fig.data[0].update(
                z=t_in.tolist(), customdata=np.stack([t_in, f_in], -1).tolist(), zmin=0, zmax=max(T - 1, 1)
            )
            self.fig.data[1].update(z=cells(sg.token), customdata=heads_custom, zmin=0, zmax=max(T - 1, 1))
            self.fig.layout.title.text = sg.title
            self.fig.layout.yaxis2.update(
                tickvals=[h * (T + 1) + (T - 1) / 2 for h in range(H)],
                ticktext=[f"head {h}" for h in range(H)],
            )
