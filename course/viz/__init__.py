"""Interactive widgets of the course (plotly FigureWidget + ipywidgets), each with a static fallback.

    from course.viz import AttentionExplorer
    AttentionExplorer(model, tokens, labels).show()

| widget | usage (see each module's docstring) |
|---|---|
| AttentionExplorer  | `AttentionExplorer(model, tokens, labels).show()` — layers × heads, stages, mask,
overview |
| MaskBuilder        | `MaskBuilder(kind="decoder", T=6, S=8, pad=2).show()` —
causal/padding/encoder/decoder/cross |
| HeadSplitView      | `HeadSplitView(T=6, D=12, H=3).show()` — (B,T,D) -> (B,H,T,d_head), the transpose
pitfall |
| PositionalExplorer | `PositionalExplorer(mode="rope").show()` — sinusoidal, RoPE (i − j), ALiBi |
| NormExplorer       | `NormExplorer([0.5, 2, -1, 3]).show()` — LayerNorm vs RMSNorm under shift and scale |
| KVCacheCalculator  | `KVCacheCalculator(preset="llama2-70b").show()` — presets, sliders, predicted vs
measured |
| SamplingExplorer   | `SamplingExplorer.from_model(model, tokens, vocab_labels).show()` — temperature, top-k,
top-p |
| TrainingView       | `v = TrainingView(model, probe); v.show(); v.train(task, steps=300)` — loss + pattern,
live |

Every widget: state -> figure logic in a pure view model (unit-tested without a browser), one FigureWidget
created once and updated in place (each costs ~5 MB of JavaScript: a handful per chapter), callback errors
shown in an Output under the figure, `to_static()` -> a plain `go.Figure`, and a display bundle that still
shows the figure without a kernel (`course.viz.static`; PNGs are added when `make lab`'s server saves the
notebook).
"""

from .attention_explorer import AttentionExplorer
from .attention_view import AttentionView
from .head_split import HeadSplitView
from .kv_calculator import KVCacheCalculator
from .mask_builder import MaskBuilder
from .norm_explorer import NormExplorer
from .positional_explorer import PositionalExplorer
from .sampling_explorer import SamplingExplorer
from .training_view import TrainingView

__all__ = [
    "AttentionExplorer",
    "AttentionView",
    "HeadSplitView",
    "KVCacheCalculator",
    "MaskBuilder",
    "NormExplorer",
    "PositionalExplorer",
    "SamplingExplorer",
    "TrainingView",
]
