"""Model configuration: one dataclass, validated on creation, with presets for the models the course cites."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

POSITIONAL = ("learned", "sinusoidal", "rope", "alibi", "relative", "none")
NORMS = ("layernorm", "rmsnorm")
PLACEMENTS = ("pre", "post")
MLPS = ("gelu", "gelu_tanh", "relu", "silu", "swiglu")
ROPE_CONVENTIONS = ("split_half", "interleaved")


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not one of {list(allowed)}")


@dataclass
class ModelConfig:
    """Every hyper-parameter of a course model. `n_kv_heads=None` means MHA (= n_heads); 1 means MQA."""

    vocab_size: int = 256
    context_length: int = 128
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int | None = None
    d_ff: int | None = None  # None: 4 * d_model (GELU/ReLU) or the 8/3 rule rounded to 8 (SwiGLU)
    positional: str = "learned"
    rope_convention: str = "split_half"
    rope_theta: float = 10000.0
    relative_buckets: int = 32
    relative_max_distance: int = 128
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    norm_placement: str = "pre"
    mlp: str = "gelu_tanh"
    bias: bool = True
    tie_weights: bool = True
    dropout: float = 0.0
    n_encoder_layers: int | None = None  # encoder-decoder only; None: n_layers

    def __post_init__(self):
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        if self.n_encoder_layers is None:
            self.n_encoder_layers = self.n_layers
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model if self.mlp != "swiglu" else 8 * ((8 * self.d_model // 3 + 7) // 8)
        for name in ("vocab_size", "context_length", "d_model", "n_layers", "n_heads", "n_kv_heads", "d_ff"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer")
        if self.d_model % self.n_heads:
            raise ValueError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}: "
                f"each head needs d_model / n_heads features"
            )
        if self.n_heads % self.n_kv_heads:
            raise ValueError(
                f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}: "
                f"each KV head must serve a whole group of query heads"
            )
        _choice("positional", self.positional, POSITIONAL)
        _choice("rope_convention", self.rope_convention, ROPE_CONVENTIONS)
        _choice("norm", self.norm, NORMS)
        _choice("norm_placement", self.norm_placement, PLACEMENTS)
        _choice("mlp", self.mlp, MLPS)
        if self.positional == "rope" and self.d_head % 2:
            raise ValueError(f"RoPE rotates pairs of features: d_head={self.d_head} must be even")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must lie in [0, 1)")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    @property
    def group_size(self) -> int:
        """Query heads per KV head: 1 for MHA, n_heads for MQA."""
        return self.n_heads // self.n_kv_heads

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> ModelConfig:
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


_GPT = dict(
    positional="learned", norm="layernorm", norm_placement="pre", mlp="gelu_tanh", bias=True, tie_weights=True
)
_LLAMA = dict(
    positional="rope", norm="rmsnorm", norm_placement="pre", mlp="swiglu", bias=False, tie_weights=False
)

PRESETS: dict[str, dict] = {
    # Real models the course cites (shapes only; weights are never downloaded).
    "gpt2-small": dict(_GPT, vocab_size=50257, context_length=1024, d_model=768, n_layers=12, n_heads=12),
    "gpt3-175b": dict(_GPT, vocab_size=50257, context_length=2048, d_model=12288, n_layers=96, n_heads=96),
    "llama2-7b": dict(
        _LLAMA, vocab_size=32000, context_length=4096, d_model=4096, n_layers=32, n_heads=32, d_ff=11008
    ),
    "llama2-70b": dict(
        _LLAMA,
        vocab_size=32000,
        context_length=4096,
        d_model=8192,
        n_layers=80,
        n_heads=64,
        n_kv_heads=8,
        d_ff=28672,
    ),
    "llama3-8b": dict(
        _LLAMA,
        vocab_size=128256,
        context_length=8192,
        d_model=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        d_ff=14336,
        rope_theta=500000.0,
    ),
    # BERT-base: Post-LN encoder, exact GELU, learned positions (token-type embeddings left out).
    "bert-base": dict(
        vocab_size=30522,
        context_length=512,
        d_model=768,
        n_layers=12,
        n_heads=12,
        positional="learned",
        norm="layernorm",
        norm_eps=1e-12,
        norm_placement="post",
        mlp="gelu",
        bias=True,
        tie_weights=True,
    ),
    # Tiny models that train on a CPU in seconds.
    "tiny": dict(_GPT, vocab_size=64, context_length=64, d_model=64, n_layers=2, n_heads=4),
    "tiny-llama": dict(
        _LLAMA, vocab_size=64, context_length=64, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2
    ),
    "tiny-encoder": dict(
        vocab_size=64,
        context_length=64,
        d_model=64,
        n_layers=2,
        n_heads=4,
        positional="learned",
        norm="layernorm",
        norm_placement="post",
        mlp="gelu",
        bias=True,
    ),
}
