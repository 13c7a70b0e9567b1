"""Scaled dot-product attention (explicit and fused), head splitting, and multi-head attention (MHA/GQA/MQA).

Shapes: hidden (B, T, d_model); q (B, H, T_q, d_head); k, v (B, H_kv, T_k, d_head); scores (B, H, T_q, T_k).
Masks are boolean with True = may attend. A fully masked query row gets zero weights and a zero output.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import ModelConfig
from .hook_point import HookPoint
from .masks import causal_mask, check_mask
from .positional import apply_rope
from .shapes import Bool, Float, Int, Tensor


def split_heads(x: Float[Tensor, "B T D"], n_heads: int) -> Float[Tensor, "B H T d_head"]:
    """(B, T, H*d_head) -> (B, H, T, d_head). The transpose matters: a bare view would mix heads and
    positions."""
    B, T, D = x.shape
    if D % n_heads:
        raise ValueError(f"cannot split d_model={D} into n_heads={n_heads} equal heads")
    return x.view(B, T, n_heads, D // n_heads).transpose(1, 2)


def merge_heads(x: Float[Tensor, "B H T d_head"]) -> Float[Tensor, "B T D"]:
    """(B, H, T, d_head) -> (B, T, H*d_head), the inverse of `split_heads`."""
    B, H, T, d = x.shape
    return x.transpose(1, 2).reshape(B, T, H * d)


def repeat_kv(x: Float[Tensor, "B H_kv T d"], group_size: int) -> Float[Tensor, "B H T d"]:
    """(B, H_kv, T, d) -> (B, H_kv*group_size, T, d): each KV head serves `group_size` consecutive query
    heads."""
    if group_size == 1:
        return x
    B, H_kv, T, d = x.shape
    return x[:, :, None].expand(B, H_kv, group_size, T, d).reshape(B, H_kv * group_size, T, d)


def _masked_scores(
    scores: torch.Tensor, mask: torch.Tensor | None, bias: torch.Tensor | None
) -> torch.Tensor:
    if bias is not None:
        scores = scores + bias
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores


def attention_scores(q, k, mask=None, bias=None, scale=None) -> torch.Tensor:
    """S = q k^T * scale (+ bias), masked cells set to -inf. (B, H, T_q, T_k)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return _masked_scores(q @ k.transpose(-2, -1) * scale, mask, bias)


def softmax_rows(scores: Float[Tensor, "*batch T_k"]) -> Float[Tensor, "*batch T_k"]:
    """Softmax over keys (the last axis) of scores of any leading shape (..., T_k): each row sums to 1.

    A row that is entirely -inf (every key masked, e.g. a padding query) becomes all zeros, not NaN, so it
    adds nothing downstream, and its gradient is zero rather than NaN. PyTorch differs by function (measured
    on torch 2.13): `torch.softmax` gives NaN for such a row (exp(-inf - -inf) = 0/0), and
    `nn.MultiheadAttention` returns NaN outputs; `F.scaled_dot_product_attention` gives a zero output row, as
    `fused_attention` here guarantees whatever the version. Rows with at least one finite score are exactly
    `torch.softmax`'s.
    """
    if scores.dim() < 1:
        raise ValueError("softmax_rows needs at least one (key) axis, got a 0-d tensor")
    dead = scores.isneginf().all(-1, keepdim=True)  # (..., 1): rows with no key to attend to
    if not dead.any():
        return torch.softmax(scores, dim=-1)
    # Softmax of a harmless row, then zeros: no NaN is made, so none reaches the gradients either.
    return torch.softmax(scores.masked_fill(dead, 0.0), dim=-1).masked_fill(dead, 0.0)


def scaled_dot_product_attention(q, k, v, mask=None, bias=None, scale=None):
    """Explicit attention: returns (output (..., T_q, d_v), weights (..., T_q, T_k)).

    `mask`: bool, broadcastable to the scores, True = may attend. `bias`: float added to the scores (ALiBi,
    relative positions). `scale` defaults to 1/sqrt(d_k).
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must share d_k, got {q.shape[-1]} and {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have the same number of keys, got {k.shape[-2]} and {v.shape[-2]}")
    if mask is not None:
        check_mask(mask, q.shape[-2], k.shape[-2])
    weights = softmax_rows(attention_scores(q, k, mask, bias, scale))
    return weights @ v, weights


# torch >= 2.5: SDPA serves each KV head to its group of query heads itself (GQA/MQA without copying K/V).
_SDPA_GQA = tuple(int(x) for x in torch.__version__.split(".")[:2]) >= (2, 5)


def fused_attention(q, k, v, mask=None, bias=None, is_causal=False):
    """`F.scaled_dot_product_attention` with the course's conventions (bool mask, fully masked rows -> 0).

    k, v may have fewer heads than q (GQA/MQA: (B, H_kv, T_k, d) with H divisible by H_kv)."""
    if mask is not None:
        check_mask(mask, q.shape[-2], k.shape[-2])
    attn_mask = mask
    if bias is not None:
        bias = bias.to(q.dtype)  # SDPA wants a float mask in the query's dtype (bf16 on GPU)
        attn_mask = bias if mask is None else bias.masked_fill(~mask, float("-inf"))
    gqa = {}
    if k.dim() >= 3 and k.shape[-3] != q.shape[-3]:
        if _SDPA_GQA:
            gqa = {"enable_gqa": True}
        else:
            k, v = repeat_kv(k, q.shape[-3] // k.shape[-3]), repeat_kv(v, q.shape[-3] // k.shape[-3])
    out = F.scaled_dot_product_attention(
        q, k, v, attn_mask=attn_mask, is_causal=is_causal and attn_mask is None, **gqa
    )
    if mask is not None:
        out = out.masked_fill(~mask.any(-1, keepdim=True), 0.0)
    return out


class MultiHeadAttention(nn.Module):
    """Multi-head attention with n_kv_heads KV heads (MHA: = n_heads, GQA: fewer, MQA: 1).

    Self-attention when `context` is None, cross-attention otherwise (queries from x, keys/values from
    context).
    """

    def __init__(self, config: ModelConfig, cross: bool = False):
        super().__init__()
        c = config
        self.n_heads, self.n_kv_heads, self.d_head = c.n_heads, c.n_kv_heads, c.d_head
        self.cross = cross
        self.q_proj = nn.Linear(c.d_model, c.n_heads * c.d_head, bias=c.bias)
        self.k_proj = nn.Linear(c.d_model, c.n_kv_heads * c.d_head, bias=c.bias)
        self.v_proj = nn.Linear(c.d_model, c.n_kv_heads * c.d_head, bias=c.bias)
        self.o_proj = nn.Linear(c.n_heads * c.d_head, c.d_model, bias=c.bias)
        self.rope_convention = c.rope_convention
        for name in (
            "hook_q",
            "hook_k",
            "hook_v",
            "hook_rot_q",
            "hook_rot_k",
            "hook_attn_scores",
            "hook_pattern",
            "hook_z",
        ):
            setattr(self, name, HookPoint())

    def _capturing(self) -> bool:
        return self.hook_pattern.active or self.hook_attn_scores.active

    def forward(
        self,
        x: Float[Tensor, "B T d_model"],
        *,
        mask: Bool[Tensor, "*#b #T T_k"] | None = None,
        rope: tuple[Float[Tensor, "*#b T half"], Float[Tensor, "*#b T half"]] | None = None,
        bias: Float[Tensor, "*#b #H #T T_k"] | None = None,
        cache=None,
        cache_pos: Int[Tensor, " T"] | None = None,
        context: Float[Tensor, "B S d_model"] | None = None,
        is_causal: bool = False,
    ) -> Float[Tensor, "B T d_model"]:
        """x (B, T, d_model) -> (B, T, d_model).

        mask: bool (.., T, T_k), True = may attend; rope: (cos, sin) for these positions; bias: (.., H, T,
        T_k) float; cache: one layer of a KV cache (self-attention only), written at slots cache_pos (T,);
        is_causal: causal attention, bottom-right aligned when keys outnumber queries (a cache's prefix).
        """
        src = x if context is None else context
        q = _per_head_hook(self.hook_q, split_heads(self.q_proj(x), self.n_heads))  # (B, H, T, d_head)
        k = _per_head_hook(self.hook_k, split_heads(self.k_proj(src), self.n_kv_heads))  # (B, H_kv, T_k, d)
        v = _per_head_hook(self.hook_v, split_heads(self.v_proj(src), self.n_kv_heads))
        if rope is not None:
            q = _per_head_hook(self.hook_rot_q, apply_rope(q, *rope, self.rope_convention))
            k = _per_head_hook(self.hook_rot_k, apply_rope(k, *rope, self.rope_convention))
        if cache is not None:
            k, v = cache.update(cache_pos, k, v)  # (B, H_kv, T_k, d_head): the cache's keys
        explicit = self._capturing()
        needs_mask = bias is not None or explicit
        mask, is_causal = resolve_mask(mask, is_causal, q.shape[-2], k.shape[-2], needs_mask, x.device)
        if explicit:
            group = self.n_heads // self.n_kv_heads
            k, v = repeat_kv(k, group), repeat_kv(v, group)
            scores = self.hook_attn_scores(attention_scores(q, k, mask, bias))
            weights = self.hook_pattern(softmax_rows(scores))
            out = weights @ v
        else:
            out = fused_attention(q, k, v, mask, bias, is_causal=is_causal)
        out = _per_head_hook(self.hook_z, out)  # (B, H, T, d_head)
        return self.o_proj(merge_heads(out))


def resolve_mask(mask, is_causal: bool, T: int, T_k: int, needs_mask: bool, device=None):
    """(mask, is_causal) for the kernels. Causality is dropped for a single query (it may read every key) and
    becomes an explicit bottom-right mask (T, T_k) where the fused causal kernel cannot serve it: more keys
    than queries (a cache's prefix), a bias, or the explicit path (`needs_mask`)."""
    if not is_causal or mask is not None:
        return mask, False
    if T == 1:
        return None, False
    if T_k != T or needs_mask:
        return causal_mask(T, T_k, device), False
    return None, True


def _per_head_hook(point: HookPoint, x: torch.Tensor) -> torch.Tensor:
    """Show x (B, H, T, d_head) to a hook as (B, T, H, d_head), TransformerLens' layout; free when
    unhooked."""
    return point(x.transpose(1, 2)).transpose(1, 2) if point.active else x
