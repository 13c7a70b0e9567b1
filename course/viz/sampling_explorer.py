"""Sampling explorer: temperature, top-k and top-p reshaping a next-token distribution.

    from course.viz import SamplingExplorer
    SamplingExplorer(logits, labels).show()                   # logits (V,), labels: V strings (default: ids)
    SamplingExplorer.from_model(model, tokens, labels).show()  # the model's next-token logits after `tokens`

Grey bars: the model's distribution (temperature 1, no filter); blue bars: what the sampler draws from
(`course.generation.next_token_probs`); a cross marks tokens the filters removed (probability exactly 0).
Temperature 0 is greedy; top-k 0 and top-p 1 switch those filters off. The `show` most likely tokens are
drawn. `sampling_bars(logits, temperature, top_k, top_p)` is the pure view model.
"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import numpy as np
import torch

from ..generation import next_token_probs
from .widget import CourseWidget, figure_widget


@dataclass
class SamplingBars:
    ids: list[int]  # the shown tokens, most likely first (by the unfiltered distribution)
    base: np.ndarray  # their probability at temperature 1, no filter
    probs: np.ndarray  # their probability under the sampler
    kept: np.ndarray  # bool: the sampler can draw it
    n_kept: int  # over the whole vocabulary
    entropy: float  # of the sampler's distribution, nats
    title: str


def sampling_bars(
    logits, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, show: int = 20
) -> SamplingBars:
    logits = torch.as_tensor(logits, dtype=torch.float64)
    if logits.dim() != 1:
        raise ValueError(f"logits must be one next-token vector (V,), got shape {tuple(logits.shape)}")
    base = logits.softmax(-1)
    probs = next_token_probs(logits, temperature, top_k or None, top_p if top_p < 1 else None)
    order = base.argsort(descending=True)[:show]
    p = probs[probs > 0]
    entropy = float(-(p * p.log()).sum())
    n_kept = int((probs > 0).sum())
    rule = "greedy" if temperature == 0 else f"temperature {temperature:g}"
    rule += f" · top-k {top_k}" if top_k else ""
    rule += f" · top-p {top_p:g}" if top_p < 1 else ""
    title = f"{rule}: {n_kept} of {logits.numel()} tokens can be drawn · entropy {entropy:.2f} nats"
    return SamplingBars(
        order.tolist(),
        base[order].numpy(),
        probs[order].numpy(),
        (probs[order] > 0).numpy(),
        n_kept,
        entropy,
        title,
    )


class SamplingExplorer(CourseWidget):
    def __init__(self, logits, labels=None, show: int = 20):
        super().__init__()
        self.logits = torch.as_tensor(logits, dtype=torch.float64).flatten()
        V = self.logits.numel()
        self.labels = [str(i) for i in range(V)] if labels is None else [str(s) for s in labels]
        if len(self.labels) != V:
            raise ValueError(f"got {len(self.labels)} labels for a vocabulary of {V}: expected one per token")
        self.show_n = min(show, V)
        label = dict(continuous_update=False, style={"description_width": "initial"})  # labels never cut
        self.temperature = widgets.FloatSlider(
            1.0, min=0, max=2, step=0.05, description="temperature", **label
        )
        self.top_k = widgets.IntSlider(0, min=0, max=V, description="top-k (0 off)", **label)
        self.top_p = widgets.FloatSlider(
            1.0, min=0.05, max=1, step=0.05, description="top-p (1 off)", **label
        )
        self.fig = figure_widget()
        hover = "'%{customdata}' (%{x}): %{y:.3f}<extra></extra>"
        self.fig.add_bar(name="model (T=1, no filter)", marker_color="#c4c4c4", hovertemplate=hover)
        self.fig.add_bar(name="sampler", marker_color="#3b75af", hovertemplate=hover)
        self.fig.add_scatter(
            name="removed",
            mode="markers",
            marker=dict(symbol="x", color="crimson", size=9),
            hovertemplate="'%{customdata}' (%{x}): removed, probability 0<extra></extra>",
        )
        self.fig.update_layout(
            width=860,
            height=430,
            barmode="group",
            title_font_size=13,
            yaxis=dict(title="probability", rangemode="tozero"),
            xaxis=dict(title="next token (most likely first)"),
            legend=dict(x=0.7, y=0.98),
        )
        self.refresh()
        for control in (self.temperature, self.top_k, self.top_p):
            self.on_change(control)
        self.view = widgets.VBox(
            [widgets.HBox([self.temperature, self.top_k, self.top_p]), self.fig, self.output]
        )

    @classmethod
    @torch.no_grad()
    def from_model(cls, model, tokens, labels=None, show: int = 20) -> SamplingExplorer:
        """Explore the distribution of the token that follows `tokens` (ids (T,)); labels: one per vocab
        entry."""
        idx = torch.as_tensor(tokens, dtype=torch.long).reshape(1, -1).to(next(model.parameters()).device)
        was_training = model.training
        model.eval()
        try:
            logits = model(idx)[0, -1].cpu()
        finally:
            model.train(was_training)
        return cls(logits, labels, show)

    def refresh(self) -> None:
        b = sampling_bars(
            self.logits, self.temperature.value, self.top_k.value, self.top_p.value, self.show_n
        )
        x = list(range(len(b.ids)))
        names = [self.labels[i] for i in b.ids]
        removed = [i for i in x if not b.kept[i]]
        with self.fig.batch_update():
            self.fig.data[0].update(x=x, y=np.round(b.base, 4).tolist(), customdata=names)
            self.fig.data[1].update(x=x, y=np.round(b.probs, 4).tolist(), customdata=names)
            self.fig.data[2].update(x=removed, y=[0.0] * len(removed), customdata=[names[i] for i in removed])
            self.fig.layout.xaxis.update(tickmode="array", tickvals=x, ticktext=names)
            self.fig.layout.title.text = b.title
