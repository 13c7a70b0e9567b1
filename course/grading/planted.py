"""Exercise 10's suspects: a Pre-LN causal self-attention block, built correct or with one planted bug.

What a learner's check may use (the notebook documents it):
  model.d_model, model.n_heads, model.d_head
  model(x)             x (B, T, d_model) -> (B, T, d_model) = x + attention(ln(x))[0]        (Pre-LN)
  model.ln(x)          the block's LayerNorm
  model.q_proj, model.k_proj, model.v_proj, model.o_proj    nn.Linear(d_model, d_model)
  model.qkv(h)         h (B, T, d_model) -> q, k, v, each (B, H, T, d_head)
  model.attention(h)   h (B, T, d_model) -> (out (B, T, d_model), weights (B, H, T, T)), causal
The correct suspect computes exactly `course.attention.MultiHeadAttention` with a causal mask (tested).
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from course.attention import attention_scores, merge_heads, softmax_rows, split_heads
from course.masks import causal_mask
from course.norms import LayerNorm

BUGS = {  # bug: (the check that must catch it, what is wrong)
    "shapes": (
        "check_shapes",
        "attention() returns the head-averaged weights (B, T, T) instead of (B, H, T, T)",
    ),
    "causal": ("check_causal", "the causal mask is off by one: position i also sees position i + 1"),
    "scale": ("check_scaling", "the scores are not divided by √d_k"),
    "rows": ("check_rows_sum_to_one", "the mask is applied after the softmax, so rows no longer sum to 1"),
    "head_split": ("check_head_split", "heads are split with view(B, H, T, d_head), without the transpose"),
    "norm": (
        "check_norm_placement",
        "the block is Post-LN, LN(x + attn(x)), instead of Pre-LN, x + attn(LN(x))",
    ),
}


# The planted bug lives outside the suspect (no attribute of the model names it), so a check has to find it by
# testing the model; reaching into private names is also flagged by the grader's scan
# (`course.grading.tamper`).
_PLANTED: weakref.WeakKeyDictionary[nn.Module, str | None] = weakref.WeakKeyDictionary()


class SuspectBlock(nn.Module):
    """One causal self-attention sub-layer with its residual and LayerNorm; `bug` plants one mistake."""

    def __init__(self, d_model: int = 16, n_heads: int = 2, seed: int = 0, bug: str | None = None):
        super().__init__()
        if bug is not None and bug not in BUGS:
            raise ValueError(f"bug={bug!r} is not one of {list(BUGS)}")
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        _PLANTED[self] = bug
        gen = torch.Generator().manual_seed(seed)
        self.ln = LayerNorm(d_model)
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(d_model, d_model) for _ in range(4))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if p is self.ln.weight else 0.0))

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, H, T, d_head)
        if _PLANTED[self] == "head_split":
            return x.view(x.shape[0], self.n_heads, x.shape[1], self.d_head)
        return split_heads(x, self.n_heads)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, T, d_head) -> (B, T, D)
        if _PLANTED[self] == "head_split":
            return x.reshape(x.shape[0], x.shape[2], self.d_model)
        return merge_heads(x)

    def qkv(self, h: torch.Tensor):
        return self._split(self.q_proj(h)), self._split(self.k_proj(h)), self._split(self.v_proj(h))

    def attention(self, h: torch.Tensor):
        q, k, v = self.qkv(h)
        T = h.shape[1]
        mask = causal_mask(T)
        if _PLANTED[self] == "causal":
            mask = torch.ones(T, T, dtype=torch.bool).tril(1)
        scores = attention_scores(q, k, scale=1.0 if _PLANTED[self] == "scale" else None)  # (B, H, T, T)
        if _PLANTED[self] == "rows":
            weights = torch.softmax(scores, -1) * mask
        else:
            weights = softmax_rows(scores.masked_fill(~mask, float("-inf")))
        out = self.o_proj(self._merge(weights @ v))
        return out, weights.mean(1) if _PLANTED[self] == "shapes" else weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _PLANTED[self] == "norm":
            return self.ln(x + self.attention(x)[0])
        return x + self.attention(self.ln(x))[0]


def suspects(d_model: int = 16, n_heads: int = 2, seed: int = 0) -> dict[str, SuspectBlock]:
    """The correct model (key None) and one model per planted bug, same size and weights."""
    return {bug: SuspectBlock(d_model, n_heads, seed, bug) for bug in (None, *BUGS)}


def _verdict(check, model) -> bool:
    result = check(model)
    if type(result) is not bool:
        raise AssertionError(
            f"{getattr(check, '__name__', 'the check')} must return True (the model passes) or "
            f"False (a bug was found), got {type(result).__name__}"
        )
    return result


def expect_check(check, bug: str, d_model: int = 16, n_heads: int = 2, seed: int = 0) -> None:
    """`check` must pass the correct model and flag the model with the planted `bug`."""
    name = getattr(check, "__name__", BUGS[bug][0])
    size = f"d_model={d_model}, n_heads={n_heads}, seed={seed}"
    if not _verdict(check, SuspectBlock(d_model, n_heads, seed)):
        raise AssertionError(
            f"{name} rejected a correct model ({size}): a check must pass every correct model"
        )
    if _verdict(check, SuspectBlock(d_model, n_heads, seed, bug)):
        raise AssertionError(f"{name} passed a model with a planted bug ({size}): {BUGS[bug][1]}")
