"""Analytic costs — parameters, FLOPs, memory — and measurements of real models to compare them with.

Exact parameter count of one block (d = d_model, h·d_head = d, F = d_ff, bias b ∈ {0, 1}):
  attention  = 2·d² + 2·d·(n_kv·d_head) + b·(2·d + 2·n_kv·d_head)          (MHA: 4d² + 4bd)
  MLP (GELU) = 2·d·F + b·(F + d)                                            (F = 4d: 8d² + 5bd)
  SwiGLU     = 3·d·F + b·(2F + d)
  norms      = 2 per block × (2d for LayerNorm with bias, d for RMSNorm)
GPT-2 style block (MHA, F = 4d, biases, LayerNorm): 12·d² + 13·d.
"""

from __future__ import annotations

import torch

from .config import ModelConfig

BYTES_PER_ELEMENT = {
    "fp32": 4,
    "float32": 4,
    "tf32": 4,
    "fp16": 2,
    "float16": 2,
    "bf16": 2,
    "bfloat16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
    "fp64": 8,
    "float64": 8,
}


def bytes_per_element(dtype) -> float:
    """Bytes of one element of a dtype given as a name ("fp16") or a torch.dtype."""
    if isinstance(dtype, torch.dtype):
        return torch.empty((), dtype=dtype).element_size()
    if dtype not in BYTES_PER_ELEMENT:
        raise ValueError(
            f"unknown dtype {dtype!r}; expected one of {sorted(BYTES_PER_ELEMENT)} or a torch.dtype"
        )
    return BYTES_PER_ELEMENT[dtype]


# --- parameters
# ----------------------------------------------------------------------------------------------
def attention_params(d_model: int, n_heads: int, n_kv_heads: int | None = None, bias: bool = True) -> int:
    """Q, K, V and output projections. GQA/MQA shrink K and V to n_kv_heads·d_head outputs."""
    n_kv_heads = n_heads if n_kv_heads is None else n_kv_heads
    d_head = d_model // n_heads
    d_kv = n_kv_heads * d_head
    weights = 2 * d_model * d_model + 2 * d_model * d_kv
    return weights + (2 * d_model + 2 * d_kv if bias else 0)


def mlp_params(d_model: int, d_ff: int, kind: str = "gelu", bias: bool = True) -> int:
    """Two matrices for GELU/ReLU MLPs; three (gate, up, down) for SwiGLU."""
    if kind == "swiglu":
        return 3 * d_model * d_ff + (2 * d_ff + d_model if bias else 0)
    return 2 * d_model * d_ff + (d_ff + d_model if bias else 0)


def norm_params(d_model: int, kind: str = "layernorm", bias: bool = True) -> int:
    return d_model * (2 if kind == "layernorm" and bias else 1)


def block_params(config: ModelConfig, cross_attention: bool = False) -> int:
    c = config
    attn = attention_params(c.d_model, c.n_heads, c.n_kv_heads, c.bias)
    n_norms = 3 if cross_attention else 2
    return (
        attn * (2 if cross_attention else 1)
        + mlp_params(c.d_model, c.d_ff, c.mlp, c.bias)
        + n_norms * norm_params(c.d_model, c.norm, c.bias)
    )


def param_count(config: ModelConfig) -> dict:
    """Parameters of a `DecoderLM(config)` per component; `total` counts tied weights once."""
    c = config
    L = c.n_layers
    counts = {
        "embeddings": c.vocab_size * c.d_model,
        "positional": (
            c.context_length * c.d_model
            if c.positional == "learned"
            else c.relative_buckets * c.n_heads
            if c.positional == "relative"
            else 0
        ),
        "attention": L * attention_params(c.d_model, c.n_heads, c.n_kv_heads, c.bias),
        "mlp": L * mlp_params(c.d_model, c.d_ff, c.mlp, c.bias),
        "norms": (2 * L + (c.norm_placement == "pre")) * norm_params(c.d_model, c.norm, c.bias),
        "head": 0 if c.tie_weights else c.vocab_size * c.d_model,
    }
    counts["per_block"] = block_params(c)
    counts["total"] = sum(v for k, v in counts.items() if k != "per_block")
    return counts


def measured_params(model: torch.nn.Module) -> int:
    """Parameters actually allocated (shared tensors counted once): the one count `DecoderLM.num_params` and
    the model cards use."""
    return sum(p.numel() for p in model.parameters())


def measured_param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


# --- KV cache
# ------------------------------------------------------------------------------------------------
def kv_cache_bytes(
    n_layers: int,
    seq_len: int,
    n_kv_heads: int,
    d_head: int,
    batch_size: int = 1,
    bytes_per_element: float = 2,
) -> int:
    """2 (K and V) × layers × positions × n_kv_heads × d_head × batch × bytes per element."""
    for name, value in (
        ("n_layers", n_layers),
        ("seq_len", seq_len),
        ("n_kv_heads", n_kv_heads),
        ("d_head", d_head),
        ("batch_size", batch_size),
    ):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}={value!r} must be a non-negative integer")
    if bytes_per_element <= 0:
        raise ValueError(f"bytes_per_element={bytes_per_element!r} must be positive")
    return int(2 * n_layers * seq_len * n_kv_heads * d_head * batch_size * bytes_per_element)


def kv_cache_bytes_for(config: ModelConfig, seq_len: int, batch_size: int = 1, dtype="fp16") -> int:
    c = config
    return kv_cache_bytes(c.n_layers, seq_len, c.n_kv_heads, c.d_head, batch_size, bytes_per_element(dtype))


def measured_cache_bytes(cache) -> int:
    """Bytes a `KVCache` holds (numel × element_size of every key and value tensor)."""
    return cache.nbytes()


# --- FLOPs and activation memory
# -----------------------------------------------------------------------------
def attention_flops(seq_len: int, d_model: int, n_kv_heads_ratio: float = 1.0) -> dict:
    """Forward FLOPs of one attention layer on T tokens (multiply-add = 2 FLOPs).

    projections 2·T·(2d² + 2d·d_kv) — linear in T; scores QKᵀ 2·T²·d and weighted values A·V 2·T²·d —
    quadratic in T.
    """
    T, d = seq_len, d_model
    proj = 2 * T * (2 * d * d + 2 * d * int(d * n_kv_heads_ratio))
    mix = 4 * T * T * d
    return {"projections": proj, "scores_and_values": mix, "total": proj + mix}


def mlp_flops(seq_len: int, d_model: int, d_ff: int, kind: str = "gelu") -> int:
    """Forward FLOPs of one MLP on T tokens: 2·T·(matrices · d·F). Linear in T, large in width."""
    return 2 * seq_len * (3 if kind == "swiglu" else 2) * d_model * d_ff


def matmul_params(config: ModelConfig) -> int:
    """N of the 6N rule: weights that take part in matmuls (LM head included, position tables excluded)."""
    c = config
    per_block = attention_params(c.d_model, c.n_heads, c.n_kv_heads, False) + mlp_params(
        c.d_model, c.d_ff, c.mlp, False
    )
    return c.n_layers * per_block + c.vocab_size * c.d_model


def training_flops_per_token(config: ModelConfig, seq_len: int | None = None) -> int:
    """6·N + 12·L·H·d_head·T (PaLM appendix B): forward + backward, attention term included."""
    c = config
    T = c.context_length if seq_len is None else seq_len
    return 6 * matmul_params(c) + 12 * c.n_layers * c.n_heads * c.d_head * T


def decode_flops_per_token(config: ModelConfig, context: int) -> int:
    c = config
    return 2 * matmul_params(c) + 4 * c.n_layers * c.n_heads * c.d_head * context


def decode_bytes_per_token(config: ModelConfig, context: int, dtype="fp32") -> int:
    """Fewest bytes a batch-1 decode step reads: every matmul weight once (LM head included) + the KV cache of
    `context` positions. Tokens/s can not exceed memory bandwidth / this (GPT-2 124M fp32: 494.6 MB at 0)."""
    c, bpe = config, bytes_per_element(dtype)
    return int(matmul_params(c) * bpe) + kv_cache_bytes(c.n_layers, context, c.n_kv_heads, c.d_head, 1, bpe)


def score_memory_bytes(batch_size: int, n_heads: int, seq_len: int, bytes_per_element: float = 4) -> int:
    """Memory of one materialized score (or weight) tensor: B·H·T² elements."""
    return int(batch_size * n_heads * seq_len * seq_len * bytes_per_element)
