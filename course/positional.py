"""Positional information: learned absolute, sinusoidal, RoPE (two conventions), ALiBi, T5 relative bias.

Every function takes token positions: an int T means 0..T-1, a tensor gives any positions, (T,) shared by the
batch or (B, T) per sequence (left-padded batches, packed sequences), so a cached decode step sees the same
positions as a full forward. ALiBi and T5 biases depend on query-key distances only.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .shapes import Float, Tensor


def positions(T: int, offset: int = 0, device=None) -> torch.Tensor:
    """(T,) positions offset..offset+T-1."""
    return torch.arange(offset, offset + T, device=device)


def as_positions(pos: int | torch.Tensor, device=None) -> torch.Tensor:
    """An int T -> positions 0..T-1; a (T,) or (B, T) tensor of positions as it is."""
    return positions(pos, 0, device) if isinstance(pos, int) else pos


# --- sinusoidal ---------------------------------------------------------------------------------------------
def sinusoidal_table(pos: int | torch.Tensor, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """(..., T, d_model): PE(pos, 2i) = sin(pos / base^(2i/D)), PE(pos, 2i+1) = cos(pos / base^(2i/D))."""
    if d_model % 2:
        raise ValueError(f"sinusoidal positions need an even d_model, got {d_model}")
    pos = as_positions(pos).float()[..., None]  # (..., T, 1)
    inv_freq = base ** (-torch.arange(0, d_model, 2, device=pos.device).float() / d_model)  # (D/2,)
    angles = pos * inv_freq  # (..., T, D/2)
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)  # sin at 2i, cos at 2i+1


# --- RoPE ---------------------------------------------------------------------------------------------------
def rope_angles(pos: int | torch.Tensor, d_head: int, theta: float = 10000.0, *, device=None):
    """(cos, sin) of angle(pos, i) = pos * theta^(-2i/d_head), computed in fp32: each (T, d_head/2) for
    positions (T,) or an int T; (B, 1, T, d_head/2) for per-sequence positions (B, T), to broadcast over
    heads."""
    pos = as_positions(pos, device)
    inv_freq = theta ** (-torch.arange(0, d_head, 2, device=pos.device, dtype=torch.float32) / d_head)
    angles = pos.float()[..., None] * inv_freq  # (..., T, d_head/2)
    if angles.dim() == 3:
        angles = angles[:, None]  # (B, 1, T, d_head/2)
    return angles.cos(), angles.sin()


def apply_rope(
    x: Float[Tensor, "*#B H T d_head"],
    cos: Float[Tensor, "*#lead T half"],
    sin: Float[Tensor, "*#lead T half"],
    convention: str = "split_half",
) -> Float[Tensor, "*#B H T d_head"]:
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


# --- ALiBi --------------------------------------------------------------------------------------------------
def alibi_slopes(n_heads: int, device=None) -> torch.Tensor:
    """Per-head slopes (Press et al.): 2^(-8/n), 2^(-16/n), ...; non powers of two interleave the next
    power's. Computed on `device` (no host-to-device copy, so a CUDA graph can capture it)."""

    def power_of_two(n):  # (n,) float64: 2^(-8/n * (i + 1))
        return 2.0 ** (-8.0 / n * torch.arange(1, n + 1, device=device, dtype=torch.float64))

    if math.log2(n_heads).is_integer():
        return power_of_two(n_heads).float()
    closest = 2 ** math.floor(math.log2(n_heads))
    extra = power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.cat((power_of_two(closest), extra)).float()


def distances(q_pos: int | torch.Tensor, k_pos: int | torch.Tensor, device=None) -> torch.Tensor:
    """(..., T_q, T_k) key position - query position. Ints: queries are the last T_q of T_k positions."""
    if isinstance(q_pos, int):
        q_pos = positions(q_pos, k_pos - q_pos, device)
    k_pos = as_positions(k_pos, q_pos.device)
    return k_pos[..., None, :] - q_pos[..., :, None]


def alibi_bias(
    n_heads: int, q_pos: int | torch.Tensor, k_pos: int | torch.Tensor, device=None
) -> torch.Tensor:
    """(..., H, T_q, T_k) = -slope_h * |i - j| for query positions i and key positions j."""
    dist = distances(q_pos, k_pos, device)[..., None, :, :]  # (..., 1, T_q, T_k)
    return -alibi_slopes(n_heads, dist.device)[:, None, None] * dist.abs()


# --- T5 relative bias ---------------------------------------------------------------------------------------
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

    def forward(self, q_pos: int | torch.Tensor, k_pos: int | torch.Tensor) -> torch.Tensor:
        """(..., H, T_q, T_k) bias for query and key positions (ints: queries are the last T_q of T_k)."""
        dist = distances(q_pos, k_pos, self.embedding.weight.device)  # (..., T_q, T_k)
        buckets = relative_bucket(dist, self.bidirectional, self.n_buckets, self.max_distance)
        return self.embedding(buckets).movedim(-1, -3)
