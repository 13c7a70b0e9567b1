"""Mask builder: the boolean masks of `course.masks` drawn cell by cell (True = may attend).

    from course.viz import MaskBuilder
    MaskBuilder().show()                      # or MaskBuilder(kind="cross", T=4, S=6, pad=2)

Kinds: causal (decoder-only), padding (keys at the end of the sequence are padding), encoder (bidirectional,
padding), decoder (causal + target padding), cross (decoder queries read the encoder's real tokens). Queries
on rows, keys on columns; a blue cell may attend, a grey "N/A" cell is masked (its score becomes -inf).
`mask_grid(kind, T, S, pad)` is the pure view model.
"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np

from .. import masks
from .heatmap import BACKGROUND, hover_grid, main_trace, overlay_trace, overlay_z, ticks
from .static import cells
from .widget import CourseWidget, figure_widget

KINDS = {
    "causal": "causal (decoder-only)",
    "padding": "padding (keys)",
    "encoder": "encoder self-attention",
    "decoder": "decoder self-attention",
    "cross": "cross-attention (decoder → encoder)",
}
ALLOWED_SCALE = [[0, "#3b75af"], [1, "#3b75af"]]


@dataclass
class MaskGrid:
    allowed: np.ndarray  # (T_q, T_k) bool, True = may attend
    q_labels: list[str]
    k_labels: list[str]
    title: str


def _seq(prefix: str, n: int, pad: int) -> tuple[list[str], np.ndarray]:
    """Labels and is_token (1, n) of a sequence whose last `pad` positions are padding."""
    if not 0 <= pad < n:
        raise ValueError(f"pad={pad} must lie in [0, {n - 1}]: at least one real token is needed")
    is_token = masks.lengths_to_padding([n - pad], n)
    labels = [f"{prefix}{i}" if i < n - pad else "<pad>" for i in range(n)]
    return labels, is_token


def mask_grid(kind: str, T: int, S: int | None = None, pad: int = 0) -> MaskGrid:
    """The mask a model of this kind uses for one sequence: T queries (targets), S keys for encoder/cross.

    `pad` pads the end of the key sequence (targets for padding/decoder, sources for encoder/cross).
    """
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {list(KINDS)}")
    S = T if S is None else S
    for name, n in (("T", T), ("S", S)):
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"{name}={n!r} must be a positive integer")
    tgt, tgt_is_token = _seq("t", T, pad if kind in ("padding", "decoder") else 0)
    src, src_is_token = _seq("s", S, pad if kind in ("encoder", "cross") else 0)
    if kind == "causal":
        m, q, k = masks.causal_mask(T), tgt, tgt
    elif kind == "padding":
        m, q, k = masks.padding_mask(tgt_is_token), tgt, tgt
    elif kind == "encoder":
        m, q, k = masks.encoder_mask(src_is_token), src, src
    elif kind == "decoder":
        m, q, k = masks.decoder_mask(T, tgt_is_token), tgt, tgt
    else:
        m, q, k = masks.cross_mask(src_is_token, T), tgt, src
    allowed = m.expand(*m.shape[:-2], len(q), len(k)).reshape(-1, len(q), len(k))[0].numpy()
    title = (
        f"{KINDS[kind]}: {tuple(m.shape)} bool mask, True = may attend<br>"
        f"{int(allowed.sum())} of {allowed.size} cells attend"
    )
    return MaskGrid(allowed, q, k, title)


class MaskBuilder(CourseWidget):
    def __init__(self, kind: str = "decoder", T: int = 6, S: int = 8, pad: int = 2):
        super().__init__()
        self.kind = widgets.Dropdown(
            options=[(v, k) for k, v in KINDS.items()],
            value=kind,
            description="mask",
            layout=widgets.Layout(width="max-content"),  # the longest kind is not cut
        )
        self.T = widgets.IntSlider(T, min=1, max=16, description="T (target)", continuous_update=False)
        self.S = widgets.IntSlider(S, min=1, max=16, description="S (source)", continuous_update=False)
        self.pad = widgets.IntSlider(pad, min=0, max=15, description="padding", continuous_update=False)
        mg = self._grid()
        custom = hover_grid(mg.q_labels, mg.k_labels)
        self.fig = figure_widget(
            [
                main_trace(
                    cells(np.where(mg.allowed, 1.0, np.nan)),
                    custom,
                    0,
                    1,
                    ALLOWED_SCALE,
                    showscale=False,
                    xgap=1,
                    ygap=1,
                    hovertemplate="query '%{customdata[0]}' (%{y}) → key '%{customdata[1]}' (%{x}): "
                    "may attend (True)<extra></extra>",
                ),
                overlay_trace(mg.allowed, custom, xgap=1, ygap=1),
            ]
        )
        self.fig.update_layout(
            width=560,
            height=520,
            plot_bgcolor=BACKGROUND,
            title=dict(text=mg.title, font_size=13),
            xaxis=dict(title="key", **ticks(mg.k_labels)),
            yaxis=dict(title="query", autorange="reversed", **ticks(mg.q_labels)),
        )
        for control in (self.kind, self.T, self.S, self.pad):
            self.on_change(control)
        self.view = widgets.VBox(
            [widgets.HBox([self.kind, self.pad]), widgets.HBox([self.T, self.S]), self.fig, self.output]
        )

    def _grid(self) -> MaskGrid:
        keys = self.S.value if self.kind.value in ("encoder", "cross") else self.T.value
        return mask_grid(self.kind.value, self.T.value, self.S.value, min(self.pad.value, keys - 1))

    def refresh(self) -> None:
        mg = self._grid()
        custom = hover_grid(mg.q_labels, mg.k_labels)
        with self.fig.batch_update():
            self.fig.data[0].update(z=cells(np.where(mg.allowed, 1.0, np.nan)), customdata=custom)
            self.fig.data[1].update(z=overlay_z(mg.allowed), customdata=custom)
            self.fig.layout.title.text = mg.title
            self.fig.layout.xaxis.update(ticks(mg.k_labels))
            self.fig.layout.yaxis.update(ticks(mg.q_labels))
