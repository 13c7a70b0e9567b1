"""LayerNorm vs RMSNorm on one vector: shift it, scale it, and watch which normalization cares.

    from course.viz import NormExplorer
    NormExplorer().show()                      # or NormExplorer([0.5, 2.0, -1.0, 3.0])

Bars per feature: the input a·x + b, `course.norms.layer_norm` of it and `course.norms.rms_norm` of it (no
learned weight). Both outputs ignore the scale a; only LayerNorm also ignores the shift b (it subtracts the
mean), so RMSNorm's output moves when you shift the input. `norm_bars(x, shift, scale)` is the pure view
model."""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch

from ..norms import layer_norm, rms_norm
from .widget import CourseWidget, figure_widget

DEFAULT = (0.5, 2.0, -1.0, 3.0, 0.0, 1.5, -2.5, 1.0)


@dataclass
class NormBars:
    x: np.ndarray  # the shifted and scaled input
    ln: np.ndarray  # layer_norm(x)
    rms: np.ndarray  # rms_norm(x)
    title: str


def parse_vector(text: str) -> list[float]:
    """'1, 2.5 -3' -> [1.0, 2.5, -3.0]; a clear ValueError for anything else."""
    parts = text.replace(",", " ").split()
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"could not read {text!r} as numbers: expected e.g. '1, 2.5, -3'") from None
    if len(values) < 2 or not np.isfinite(values).all():
        raise ValueError(f"need at least two finite numbers, got {text!r}")
    return values


def norm_bars(x, shift: float = 0.0, scale: float = 1.0, eps: float = 1e-5) -> NormBars:
    v = torch.as_tensor(x, dtype=torch.float64) * scale + shift  # (D,)
    ln, rms = layer_norm(v, eps=eps), rms_norm(v, eps=eps)
    title = (
        f"input: mean {v.mean():.2f}, rms {v.pow(2).mean().sqrt():.2f} → LayerNorm: mean {ln.mean():.2f}, "
        f"std {ln.std(unbiased=False):.2f} · RMSNorm: mean {rms.mean():.2f}, rms "
        f"{rms.pow(2).mean().sqrt():.2f}"
    )
    return NormBars(v.numpy(), ln.numpy(), rms.numpy(), title)


class NormExplorer(CourseWidget):
    def __init__(self, x=DEFAULT):
        super().__init__()
        self.vector = widgets.Text(
            ", ".join(f"{v:g}" for v in x),
            description="x",
            continuous_update=False,
            layout=widgets.Layout(width="420px"),
        )
        self.shift = widgets.FloatSlider(
            0.0, min=-5, max=5, step=0.25, description="shift b", continuous_update=False
        )
        self.scale = widgets.FloatLogSlider(
            1.0, base=10, min=-2, max=2, step=0.25, description="scale a", continuous_update=False
        )
        self.fig = figure_widget()
        for name, colour in (("input a·x + b", "#9a9a9a"), ("LayerNorm", "#3b75af"), ("RMSNorm", "#e1812c")):
            self.fig.add_bar(
                name=name, marker_color=colour, hovertemplate="feature %{x}: %{y:.3f}<extra></extra>"
            )
        self.fig.update_layout(
            width=820,
            height=440,
            barmode="group",
            title_font_size=13,
            xaxis=dict(title="feature", dtick=1),
            yaxis=dict(title="value"),
        )
        self.refresh()
        for control in (self.vector, self.shift, self.scale):
            self.on_change(control)
        self.view = widgets.VBox([self.vector, widgets.HBox([self.shift, self.scale]), self.fig, self.output])

    def refresh(self) -> None:
        bars = norm_bars(parse_vector(self.vector.value), self.shift.value, self.scale.value)
        with self.fig.batch_update():
            for trace, values in zip(self.fig.data, (bars.x, bars.ln, bars.rms), strict=False):
                trace.update(x=list(range(len(values))), y=np.round(values, 4).tolist())
            self.fig.layout.title.text = bars.title
