"""Attention masks as boolean tensors. Polarity everywhere in the course: **True = may attend**.

Shapes broadcast against scores `(B, H, T_q, T_k)`: a causal mask is `(T_q, T_k)`, a padding mask over keys is
`(B, 1, 1, T_k)`. A query row with no True entry is *fully masked*: the course's attention returns zero
weights and a zero output for it (never NaN) — see `course.attention`.
"""

from __future__ import annotations

import torch


def causal_mask(T: int, T_k: int | None = None, device=None) -> torch.Tensor:
    """(T, T_k) bool, True where query i may attend key j, i.e. j <= i + (T_k - T).

    With T_k > T (queries are the *last* T of T_k positions, as in a KV-cached step or a chunked prefill) the
    diagonal is aligned bottom-right. (`F.scaled_dot_product_attention(is_causal=True)` aligns it top-left.)
    """
    T_k = T if T_k is None else T_k
    if T < 1 or T_k < T:
        raise ValueError(f"causal_mask needs 1 <= T <= T_k, got T={T}, T_k={T_k}")
    return torch.ones(T, T_k, dtype=torch.bool, device=device).tril(diagonal=T_k - T)


def padding_mask(is_token: torch.Tensor) -> torch.Tensor:
    """(B, T) bool (True = real token, False = padding) -> (B, 1, 1, T) key mask."""
    if is_token.dtype != torch.bool or is_token.dim() != 2:
        raise ValueError(
            f"padding mask must be a (B, T) bool tensor with True for real tokens, "
            f"got dtype={is_token.dtype}, shape={tuple(is_token.shape)}"
        )
    return is_token[:, None, None, :]


def lengths_to_padding(lengths: torch.Tensor | list[int], T: int) -> torch.Tensor:
    """Sequence lengths (B,) -> (B, T) bool, True for the first `length` positions of each row."""
    lengths = torch.as_tensor(lengths)
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def combine(*masks: torch.Tensor | None) -> torch.Tensor | None:
    """Logical AND of broadcastable boolean masks (None entries are ignored)."""
    out = None
    for m in masks:
        if m is not None:
            out = m if out is None else out & m
    return out


def encoder_mask(src_is_token: torch.Tensor | None = None, T: int | None = None) -> torch.Tensor:
    """Encoder (bidirectional) self-attention: every real token sees every real token. (B,1,1,T) or (T,T)."""
    if src_is_token is None:
        if T is None:
            raise ValueError("encoder_mask needs a padding mask or a length T")
        return torch.ones(T, T, dtype=torch.bool)
    return padding_mask(src_is_token)


def decoder_mask(T: int, tgt_is_token: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder (causal) self-attention, optionally with target padding: (T,T) or (B,1,T,T)."""
    causal = causal_mask(T, device=None if tgt_is_token is None else tgt_is_token.device)
    return causal if tgt_is_token is None else combine(causal, padding_mask(tgt_is_token))


def cross_mask(src_is_token: torch.Tensor, T_tgt: int) -> torch.Tensor:
    """Cross-attention: each decoder query may read every real encoder token. (B, 1, T_tgt, T_src)."""
    return padding_mask(src_is_token).expand(-1, 1, T_tgt, -1)


def check_mask(mask: torch.Tensor, T_q: int, T_k: int) -> None:
    """Raise a ValueError unless `mask` is a bool tensor broadcastable to (..., T_q, T_k)."""
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be a torch.bool tensor (True = may attend), got "
            f"{type(mask).__name__ if not isinstance(mask, torch.Tensor) else mask.dtype}"
        )
    if mask.dim() < 2 or mask.shape[-2] not in (1, T_q) or mask.shape[-1] not in (1, T_k):
        raise ValueError(
            f"mask of shape {tuple(mask.shape)} does not broadcast to scores (..., T_q={T_q}, T_k={T_k})"
        )
