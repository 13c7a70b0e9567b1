"""KV-cache calculator: bytes of the cache for a model preset or your own shape, and a check on a real cache.

    from course.viz import KVCacheCalculator
    KVCacheCalculator().show()                     # or KVCacheCalculator(model=my_decoder_lm,
    preset="llama2-70b")

bytes = 2 (K and V) × layers × positions × KV heads × d_head × batch × bytes per element
(`course.costs.kv_cache_bytes`). Pick a preset (`course.ModelConfig.from_preset`) or move the sliders; the
curve shows bytes against sequence length for this shape and for the same model with one KV head per query
head (MHA). Below the figure: the formula's bytes for a real course model (a random `tiny-llama` unless
`model` is given) next to what `KVCache.for_model(model, batch, T, dtype).nbytes()` actually allocates.
`kv_figures(shape)` and `predicted_vs_measured(model, batch, seq_len, dtype)` are the pure view model.
"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import torch

from .. import costs
from ..config import PRESETS, ModelConfig
from ..kv_cache import KVCache
from .widget import CourseWidget, figure_widget

DTYPES = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
    "fp8": torch.float8_e4m3fn,
    "int8": torch.int8,
}
GIB = 2**30


@dataclass
class KVShape:
    n_layers: int
    seq_len: int
    batch_size: int
    n_kv_heads: int
    d_head: int
    n_heads: int
    dtype: str = "fp16"

    @classmethod
    def from_preset(cls, name: str, seq_len: int | None = None, batch_size: int = 1, dtype: str = "fp16"):
        c = ModelConfig.from_preset(name)
        return cls(
            c.n_layers, seq_len or c.context_length, batch_size, c.n_kv_heads, c.d_head, c.n_heads, dtype
        )

    def nbytes(self, seq_len: int | None = None, n_kv_heads: int | None = None) -> int:
        return costs.kv_cache_bytes(
            self.n_layers,
            self.seq_len if seq_len is None else seq_len,
            n_kv_heads or self.n_kv_heads,
            self.d_head,
            self.batch_size,
            costs.bytes_per_element(self.dtype),
        )


def seq_len_stops(*extra: int) -> list[int]:
    """The sequence-length slider's stops: powers of two 1 .. 131,072 (one arrow key doubles or halves the
    length), plus any other length a preset uses."""
    return sorted({2**k for k in range(18)} | {int(t) for t in extra})


def human(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:,.2f} {unit}"
    return f"{int(n):,} B"


@dataclass
class KVFigure:
    seq_lens: list[int]
    gib: list[float]  # this shape
    mha_gib: list[float]  # the same model with n_kv_heads = n_heads
    title: str


def kv_figures(s: KVShape) -> KVFigure:
    lens = sorted({2**k for k in range(4, 18)} | {s.seq_len})
    total = s.nbytes()
    group = s.n_heads // s.n_kv_heads
    saving = (
        f" — MHA ({s.n_heads} KV heads) would need {human(s.nbytes(n_kv_heads=s.n_heads))}"
        if group > 1
        else ""
    )
    title = (
        f"{s.n_layers} layers × {s.seq_len:,} tokens × {s.n_kv_heads} KV heads × d_head {s.d_head} × "
        f"batch {s.batch_size} × {s.dtype}: <b>{human(total)}</b>{saving}"
    )
    return KVFigure(
        lens,
        [round(s.nbytes(seq_len=t) / GIB, 6) for t in lens],
        [round(s.nbytes(seq_len=t, n_kv_heads=s.n_heads) / GIB, 6) for t in lens],
        title,
    )


def predicted_vs_measured(model, batch_size: int, seq_len: int, dtype: str) -> tuple[int, int]:
    """(formula bytes, bytes KVCache.for_model allocates) for a real course model."""
    c = model.config
    predicted = costs.kv_cache_bytes(
        c.n_layers, seq_len, c.n_kv_heads, c.d_head, batch_size, costs.bytes_per_element(DTYPES[dtype])
    )
    return predicted, KVCache.for_model(model, batch_size, seq_len, DTYPES[dtype]).nbytes()


class KVCacheCalculator(CourseWidget):
    def __init__(self, model=None, preset: str = "llama2-7b", dtype: str = "fp16"):
        super().__init__()
        from ..models import DecoderLM

        self.model = model if model is not None else DecoderLM(ModelConfig.from_preset("tiny-llama"))
        s = KVShape.from_preset(preset, dtype=dtype)
        self.preset = widgets.Dropdown(options=list(PRESETS), value=preset, description="preset")
        slider = lambda value, lo, hi, name: widgets.IntSlider(
            value,
            min=lo,
            max=hi,
            description=name,  # noqa: E731
            continuous_update=False,
        )
        self.n_layers = slider(s.n_layers, 1, 128, "layers")
        # a linear 1..131,072 slider put 4,096 at its far left and stepped by 1: powers of two instead
        self.seq_len = widgets.SelectionSlider(
            options=[(f"{t:,}", t) for t in seq_len_stops(s.seq_len)],
            value=s.seq_len,
            description="seq len",
            continuous_update=False,
        )
        self.batch = slider(1, 1, 64, "batch")
        self.n_kv_heads = slider(s.n_kv_heads, 1, 128, "KV heads")
        self.d_head = slider(s.d_head, 8, 256, "d_head")
        self.n_heads = s.n_heads
        self.dtype = widgets.Dropdown(options=list(DTYPES), value=dtype, description="dtype")
        self.measured = widgets.HTML()
        self.fig = figure_widget()
        self.fig.add_scatter(name="this shape", mode="lines", hovertemplate="%{x:,} tokens: %{y:.3f} GiB")
        self.fig.add_scatter(
            name="MHA (n_kv_heads = n_heads)",
            mode="lines",
            line_dash="dash",
            hovertemplate="%{x:,} tokens: %{y:.3f} GiB",
        )
        self.fig.add_scatter(
            name="now", mode="markers", marker_size=11, hovertemplate="%{x:,} tokens: %{y:.3f} GiB"
        )
        self.fig.update_layout(
            width=860,
            height=430,
            title_font_size=13,
            xaxis=dict(type="log", dtick=1, title="sequence length (tokens)"),  # one label per decade
            yaxis=dict(type="log", dtick=1, exponentformat="power", title="KV cache (GiB)"),
            legend=dict(x=0.01, y=0.99),
        )
        self.refresh()
        self.on_change(self.preset, self._on_preset)
        for control in (self.n_layers, self.seq_len, self.batch, self.n_kv_heads, self.d_head, self.dtype):
            self.on_change(control)
        self.view = widgets.VBox(
            [
                widgets.HBox([self.preset, self.dtype]),
                widgets.HBox([self.n_layers, self.seq_len, self.batch]),
                widgets.HBox([self.n_kv_heads, self.d_head]),
                self.fig,
                self.measured,
                self.output,
            ]
        )

    def shape(self) -> KVShape:
        return KVShape(
            self.n_layers.value,
            self.seq_len.value,
            self.batch.value,
            self.n_kv_heads.value,
            self.d_head.value,
            max(self.n_heads, self.n_kv_heads.value),
            self.dtype.value,
        )

    def _on_preset(self, change) -> None:
        s = KVShape.from_preset(change["new"], dtype=self.dtype.value)
        with self.muted():
            self.n_heads = s.n_heads
            if s.seq_len not in self.seq_len.options:
                self.seq_len.options = [(f"{t:,}", t) for t in seq_len_stops(s.seq_len)]
            self.n_layers.value, self.seq_len.value = s.n_layers, s.seq_len
            self.n_kv_heads.value, self.d_head.value = s.n_kv_heads, s.d_head

    def refresh(self) -> None:
        s = self.shape()
        f = kv_figures(s)
        c = self.model.config
        T = min(s.seq_len, c.context_length)
        predicted, measured = predicted_vs_measured(self.model, s.batch_size, T, s.dtype)
        with self.fig.batch_update():
            self.fig.data[0].update(x=f.seq_lens, y=f.gib)
            self.fig.data[1].update(x=f.seq_lens, y=f.mha_gib, visible=s.n_heads != s.n_kv_heads)
            self.fig.data[2].update(x=[s.seq_len], y=[round(s.nbytes() / GIB, 6)])
            self.fig.layout.title.text = f.title
        verdict = "equal" if predicted == measured else "DIFFERENT"
        self.measured.value = (
            f"Course model ({c.n_layers} layers, {c.n_kv_heads} KV heads × d_head {c.d_head}), batch "
            f"{s.batch_size}, {T} positions, {s.dtype}: formula <b>{predicted:,} B</b>, "
            f"<code>KVCache.for_model(...).nbytes()</code> <b>{measured:,} B</b> — {verdict}."
        )
