"""Positional information: learned absolute, sinusoidal, RoPE (two conventions), ALiBi, T5 relative bias.

Every function takes an `offset`: the number of positions already processed (the KV-cache length), so a cached
decode step sees the same positions as a full forward.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn


def positions(T: int, offset: int = 0, device=None) -> torch.Tensor:
    return torch.arange(offset, offset + T, device=device)


# --- sinusoidal
# ----------------------------------------------------------------------------------------------
def sinusoidal_table(T: int, d_model: int, offset: int = 0, base: float = 10000.0) -> torch.Tensor:
    """(T, d_model): PE(pos, 2i) = sin(pos / base^(2i/D)), PE(pos, 2i+1) = cos(pos / base^(2i/D))."""
    if d_model % 2:
        raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
    pos = positions(T, offset).float()[:, None]  # (T, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2).float() / d_model)  # (D/2,)
    table = torch.zeros(T, d_model)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table


# --- RoPE
# ----------------------------------------------------------------------------------------------------
def rope_angles(T: int, d_head: int, theta: float = 10000.0, offset: int = 0, device=None):
    """(cos, sin), each (T, d_head/2): angle(pos, i) = pos * theta^(-2i/d_head), computed in fp32."""
    inv_freq = theta ** (-torch.arange(0, d_head, 2, device=device, dtype=torch.float32) / d_head)
    angles = positions(T, offset, device).float()[:, None] * inv_freq[None, :]
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, convention: str = "split_half"):
    """Rotate feature pairs of x (B, H, T, d_head) by position.

    split_half (Hugging Face Llama, GPT-NeoX): pair i is (x[i], x[i + d/2]).
    interleaved (RoFormer paper, Meta's Llama code): pair i is (x[2i], x[2i+1]).
    The two are the same rotation applied to a permuted feature order: interleaved(x) = P⁻¹ split_half(P x),
    with P the permutation that moves even features to the first half and odd features to the second
    (`interleaved_to_split_half`). q·k scores are therefore identical when q and k are permuted alike.
    """
    cos, sin = cos.to(x.dtype), sin.to(x.dtype)
    if convention == "split_half":
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    if convention == "interleaved":
        x1, x2 = x[..., 0::2], x[..., 1::2]
        return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    raise ValueError(f"convention={convention!r} is not one of ['split_half', 'interleaved']")


def interleaved_to_split_half(d_head: int) -> torch.Tensor:
    """Index permutation P: x[..., P] puts features (0, 2, 4, ..., 1, 3, 5, ...) in split-half order."""
    return torch.cat((torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)))


# --- ALiBi
# ---------------------------------------------------------------------------------------------------
def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head slopes (Press et al.): 2^(-8/n), 2^(-16/n), ...; non powers of two interleave the next
    power's."""

    def power_of_two(n):
        start = 2 ** (-8 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        return torch.tensor(power_of_two(n_heads))
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(power_of_two(closest) + extra)


def alibi_bias(n_heads: int, T_q: int, T_k: int, device=None) -> torch.Tensor:
    """(H, T_q, T_k) = -slope_h * |i - j|, with queries the last T_q of T_k positions."""
    i = torch.arange(T_k - T_q, T_k, device=device)[:, None]
    j = torch.arange(T_k, device=device)[None, :]
    return -alibi_slopes(n_heads).to(device)[:, None, None] * (i - j).abs()


# --- T5 relative bias
# ----------------------------------------------------------------------------------------
def relative_bucket(relative: torch.Tensor, bidirectional: bool, n_buckets: int, max_distance: int):
    """T5's bucketing of (key - query) distances: exact for small distances, logarithmic up to
    max_distance."""
    bucket = torch.zeros_like(relative)
    if bidirectional:
        n_buckets //= 2
        bucket += (relative > 0).long() * n_buckets
        relative = relative.abs()
    else:
        relative = -relative.clamp(max=0)
    max_exact = n_buckets // 2
    is_small = relative < max_exact
    log_bucket = (
        max_exact
        + (
            torch.log(relative.float().clamp(min=1) / max_exact)
            / math.log(max_distance / max_exact)
            * (n_buckets - max_exact)
        ).long()
    )
    log_bucket = log_bucket.clamp(max=n_buckets - 1)
    return bucket + torch.where(is_small, relative, log_bucket)


class RelativePositionBias(nn.Module):
    """A learned scalar per (head, distance bucket), added to the scores of every layer (T5)."""

    def __init__(
        self, n_heads: int, n_buckets: int = 32, max_distance: int = 128, bidirectional: bool = False
    ):
        super().__init__()
        self.n_buckets, self.max_distance, self.bidirectional = n_buckets, max_distance, bidirectional
        self.embedding = nn.Embedding(n_buckets, n_heads)

    def forward(self, T_q: int, T_k: int) -> torch.Tensor:
        """(H, T_q, T_k) bias, queries being the last T_q of the T_k positions."""
        device = self.embedding.weight.device
        i = torch.arange(T_k - T_q, T_k, device=device)[:, None]
        j = torch.arange(T_k, device=device)[None, :]
        buckets = relative_bucket(j - i, self.bidirectional, self.n_buckets, self.max_distance)
        return self.embedding(buckets).permute(2, 0, 1)
