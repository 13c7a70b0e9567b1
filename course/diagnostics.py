"""Diagnostics: the checks that catch transformer bugs, and the measurements that show what heads do.

check_shape              named-axis shape checks ("B H T d_head"); the error names the wrong axis
check_model_shapes       every captured activation of a model against its config
causal_leak              perturb a future token; earlier outputs must not move (models or functions)
check_attention_weights  rows sum to 1, masked keys get 0 (catches a mask applied after softmax)
future_attention         attention weight on future keys per layer/head (A_ij for j > i must be 0)
attention_entropy        how sharp or diffuse each head is
residual_norms           stream norm per layer vs the size of each attention/MLP update
gradient_norms           gradient norm per block (vanishing / exploding with depth)
ablate_heads             context manager that switches heads off (a hook zeroing them in attn.hook_z)
head_ablation_effects    loss increase when each head alone is switched off
induction_scores         attention to the token after the previous occurrence of the current token
previous_token_scores    attention to the previous position
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .capture import hooks, run_with_cache
from .losses import lm_loss

AXES = {
    "B": "batch",
    "T": "time",
    "T_q": "query time",
    "T_k": "key time",
    "H": "heads",
    "H_kv": "KV heads",
    "d_head": "head size",
    "D": "model size",
    "d_model": "model size",
    "V": "vocab",
    "L": "layers",
}


# ----------------------------------------------------------------------------- shapes


def check_shape(x: torch.Tensor, spec: str, name: str = "tensor", **sizes: int) -> None:
    """Check `x` against a layout such as "B H T d_head" and the expected sizes given by keyword.

    Raises ValueError naming the wrong axis: "q: axis 1 (heads H) has size 8, expected 4 in (B, H, T,
    d_head)". Axes without a given size are only counted.
    """
    axes = spec.split()
    unknown = set(sizes) - set(axes)
    if unknown:
        raise ValueError(f"sizes given for axes {sorted(unknown)} that the layout {spec!r} does not have")
    layout = "(" + ", ".join(axes) + ")"
    if x.dim() != len(axes):
        raise ValueError(
            f"{name}: expected {len(axes)} axes {layout}, got {x.dim()} with shape {tuple(x.shape)}"
        )
    for i, axis in enumerate(axes):
        if axis in sizes and x.shape[i] != sizes[axis]:
            raise ValueError(
                f"{name}: axis {i} ({AXES.get(axis, axis)} {axis}) has size {x.shape[i]}, expected "
                f"{sizes[axis]} in {layout}; shape is {tuple(x.shape)}"
            )


LAYOUTS = {
    "hook_resid_pre": "B T D",
    "hook_resid_mid": "B T D",
    "hook_resid_post": "B T D",
    "hook_attn_out": "B T D",
    "hook_mlp_out": "B T D",
    "attn.hook_q": "B T H d_head",
    "attn.hook_k": "B T H_kv d_head",
    "attn.hook_v": "B T H_kv d_head",
    "attn.hook_z": "B T H d_head",
    "attn.hook_attn_scores": "B H T T_k",
    "attn.hook_pattern": "B H T T_k",
}


def check_model_shapes(model, idx: torch.Tensor) -> list[str]:
    """Run `model` on idx (B, T) and check the logits and every block's captured activations (`LAYOUTS`)
    against the config. Returns the checks that passed; raises ValueError at the first that fails."""
    c = model.config
    B, T = idx.shape
    sizes = {
        "B": B,
        "T": T,
        "T_k": T,
        "D": c.d_model,
        "H": c.n_heads,
        "H_kv": c.n_kv_heads,
        "d_head": c.d_head,
    }
    logits, cache = run_with_cache(model, idx)
    check_shape(logits, "B T V", "logits", B=B, T=T, V=c.vocab_size)
    passed = ["logits (B, T, V)"]
    for name, tensor in cache.items():
        spec = LAYOUTS.get(name.split(".", 2)[-1]) if name.startswith("blocks.") else None
        if spec is not None:
            check_shape(tensor, spec, name, **{axis: sizes[axis] for axis in spec.split()})
            passed.append(f"{name} ({', '.join(spec.split())})")
    return passed


# ----------------------------------------------------------------------------- masks and leaks


@dataclass
class LeakReport:
    """`max_change[i]`: the largest change of position i's output when any *later* token is perturbed.

    `reference` is the largest change at or after the perturbed token (the effect it is allowed to have).
    """

    max_change: torch.Tensor  # (T - 1,) for query positions 0 .. T-2 (the last position has no future)
    reference: float
    tol: float

    @property
    def leaks(self) -> bool:
        return bool((self.max_change > self.tol).any())

    @property
    def leaky_positions(self) -> list[int]:
        return (self.max_change > self.tol).nonzero().flatten().tolist()

    def __str__(self) -> str:
        worst = self.max_change.max().item()
        if self.leaks:
            return (
                f"LEAK: outputs at positions {self.leaky_positions} change when a later token changes "
                f"(max change {worst:.3g} > tol {self.tol:.3g}; allowed changes reach {self.reference:.3g})"
            )
        return (
            f"no causal leak: earlier outputs move by at most {worst:.3g} (tol {self.tol:.3g}), later ones "
            f"by up to {self.reference:.3g}"
        )


@torch.no_grad()
def causal_leak(model, idx: torch.Tensor, tol: float | None = None) -> LeakReport:
    """Perturb each position j of one sequence in turn; outputs at positions i < j must not move.

    `model` maps a batch of sequences to per-position outputs (B, T, ...): a course model on token ids
    idx (T,) or (1, T) (token j becomes the next id), or any layer or function on vectors x (T, D) or (1, T,
    D) (1 is added to vector j), e.g. `lambda x: scaled_dot_product_attention(x, x, x, mask)[0]`. All T - 1
    perturbed copies run as one batch. A correct causal model gives changes of 0 (or float-rounding level);
    one that lets position i read j > i (no mask, mask after softmax, a head split without the transpose)
    moves them. `tol` defaults to 1e-6 x the largest output (pass a larger one for bf16).
    """
    tokens = not idx.is_floating_point()
    rank = 2 if tokens else 3  # (1, T) ids or (1, T, D) vectors
    idx = idx[None] if idx.dim() == rank - 1 else idx
    if idx.dim() != rank or idx.shape[0] != 1 or idx.shape[1] < 2:
        raise ValueError(
            f"causal_leak takes one sequence, {'(T,) or (1, T)' if tokens else '(T, D) or (1, T, D)'}"
            f" with T >= 2, got {tuple(idx.shape)}"
        )
    V = getattr(getattr(model, "config", None), "vocab_size", None)
    if tokens and V is None:
        raise ValueError("token ids need a model with config.vocab_size; pass vectors (T, D) otherwise")
    T = idx.shape[1]
    base = model(idx)  # (1, T, ...)
    tol = 1e-6 * max(1.0, base.abs().max().item()) if tol is None else tol
    perturbed = idx.repeat(T - 1, *[1] * (rank - 1))  # row r changes position r + 1
    rows = torch.arange(T - 1, device=idx.device)
    if tokens:
        perturbed[rows, rows + 1] = (perturbed[rows, rows + 1] + 1) % V
    else:
        perturbed[rows, rows + 1] += 1.0
    change = (model(perturbed) - base).abs().reshape(T - 1, T, -1).amax(-1).float()  # (T-1 rows, T positions)
    future = rows[:, None] + 1 > torch.arange(T, device=idx.device)[None, :]  # position i < perturbed j
    max_change = change.masked_fill(~future, 0.0).amax(0)[: T - 1]  # (T-1,)
    reference = change.masked_fill(future, 0.0).max().item()
    return LeakReport(max_change.cpu(), reference, tol)


def check_attention_weights(
    weights: torch.Tensor, mask: torch.Tensor | None = None, atol: float = 1e-5
) -> None:
    """Raise ValueError unless weights (..., T_q, T_k) are a proper attention pattern: non-negative, zero
    where `mask` (bool, True = may attend) forbids, and each row summing to 1 (a fully masked row: to 0).

    Catches a mask applied after the softmax (or by multiplying by zero): rows then sum to less than 1.
    """
    if (weights < -atol).any():
        raise ValueError(f"attention weights must be >= 0, found {weights.min().item():.3g}")
    allowed = torch.ones_like(weights, dtype=torch.bool) if mask is None else mask.expand_as(weights)
    if weights.masked_fill(allowed, 0.0).abs().max() > atol:
        raise ValueError("attention weights are non-zero on masked (forbidden) keys")
    sums = weights.sum(-1)  # (..., T_q)
    expected = allowed.any(-1).to(sums.dtype)
    bad = (sums - expected).abs() > atol
    if bad.any():
        where = tuple(i.item() for i in bad.nonzero()[0])
        raise ValueError(
            f"attention rows must sum to 1 (0 when fully masked): row {where} sums to "
            f"{sums[where].item():.4f}; was the mask applied after the softmax?"
        )


def _patterns(model, idx) -> torch.Tensor:
    """Attention weights of every layer (L, B, H, T_q, T_k)."""
    _, cache = run_with_cache(model, idx, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    return cache.stack("pattern")


def future_attention(model, idx: torch.Tensor) -> torch.Tensor:
    """(L, H): the largest attention weight any query puts on a later key. 0 for a causal model."""
    A = _patterns(model, idx)
    T_q, T_k = A.shape[-2:]
    future = torch.ones(T_q, T_k, dtype=torch.bool, device=A.device).triu(1 + T_k - T_q)
    return A.masked_fill(~future, 0.0).amax(dim=(1, 3, 4))


# ----------------------------------------------------------------------------- attention statistics


def attention_entropy(model, idx: torch.Tensor, normalized: bool = False) -> torch.Tensor:
    """(L, H) mean entropy (nats) of each head's attention rows. Near 0: a sharp head; near log(#keys):
    diffuse.

    normalized=True divides each row by log(number of keys its mask shows it: i + 1 in a causal model, all T
    in an encoder), skipping rows that see one key, so 1.0 means uniform attention whatever the position.
    """
    A = _patterns(model, idx).float()  # (L, B, H, T_q, T_k)
    H = torch.special.entr(A).sum(-1)  # (L, B, H, T_q)
    if not normalized:
        return H.mean(dim=(1, 3))
    T_q, T_k = A.shape[-2:]
    causal = getattr(getattr(model, "transformer", model), "causal", True)
    n_keys = torch.arange(T_q, device=A.device) + 1 + T_k - T_q  # (T_q,) keys each query may see
    if not causal:
        n_keys = torch.full_like(n_keys, T_k)
    seen = n_keys > 1
    return (H[..., seen] / n_keys[seen].float().log()).mean(dim=(1, 3))


def offset_attention(A: torch.Tensor, offset: int, first_query: int = 0) -> torch.Tensor:
    """Mean weight that queries i >= first_query put on key i - offset. A (L, B, H, T, T) -> (L, H)."""
    T = A.shape[-2]
    if not 0 <= offset <= first_query < T:
        raise ValueError(f"need 0 <= offset={offset} <= first_query={first_query} < T={T}")
    q = torch.arange(first_query, T, device=A.device)
    return A[..., q, q - offset].mean(dim=(1, 3))


def previous_token_scores(model, idx: torch.Tensor) -> torch.Tensor:
    """(L, H) mean attention from each position to the one before it."""
    return offset_attention(_patterns(model, idx), offset=1, first_query=1)


def induction_scores(model, idx: torch.Tensor, period: int) -> torch.Tensor:
    """(L, H) induction score on sequences whose last `period` tokens repeat the `period` before them
    (e.g. `course.data.repeated_tokens`).

    A query i in the repeat attends, in an induction head, to key i - period + 1: the token that followed the
    previous occurrence of token i. Scores near 1 mark induction heads.
    """
    T = idx.shape[-1]
    if not 2 <= period <= T // 2:
        raise ValueError(f"period={period} needs two copies inside T={T}: expected 2 <= period <= {T // 2}")
    return offset_attention(_patterns(model, idx), offset=period - 1, first_query=T - period)


# ----------------------------------------------------------------------------- norms and gradients


def residual_norms(model, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean L2 norm per token of the residual stream and of each block's updates.

    "resid": (L + 1,) stream entering each block and leaving the last; "attn_update", "mlp_update": (L,) what
    each sub-layer adds (Pre-LN) or feeds into the norm (Post-LN); "update_ratio": (L,) block update / stream
    in."""
    _, cache = run_with_cache(
        model,
        idx,
        names_filter=lambda n: (
            n.startswith("blocks.")
            and n.endswith(("hook_resid_pre", "hook_resid_post", "hook_attn_out", "hook_mlp_out"))
        ),
    )
    norm = lambda short: cache.stack(short).float().norm(dim=-1).mean(dim=(1, 2))  # (L,)
    pre, post = norm("resid_pre"), norm("resid_post")
    update = torch.stack(
        [
            (cache["resid_post", l] - cache["resid_pre", l]).float().norm(dim=-1).mean()
            for l in range(len(model.blocks))
        ]
    )
    return {
        "resid": torch.cat([pre, post[-1:]]),
        "attn_update": norm("attn_out"),
        "mlp_update": norm("mlp_out"),
        "update_ratio": update / pre,
    }


def gradient_norms(
    model, idx: torch.Tensor, targets: torch.Tensor | None = None, loss_mask=None
) -> torch.Tensor:
    """(L,) gradient norm of each block's parameters for the next-token loss (targets default to idx shifted).

    Uses torch.autograd.grad, so the model's `.grad` fields are left untouched.
    """
    if targets is None:
        idx, targets = idx[:, :-1], idx[:, 1:]
    params = [list(block.parameters()) for block in model.blocks]
    loss = lm_loss(model(idx), targets, loss_mask)
    grads = torch.autograd.grad(loss, [p for group in params for p in group], allow_unused=True)
    norms, i = [], 0
    for group in params:
        sq = sum(g.float().pow(2).sum() for g in grads[i : i + len(group)] if g is not None)
        norms.append(torch.as_tensor(sq).sqrt())
        i += len(group)
    return torch.stack(norms)


# ----------------------------------------------------------------------------- ablations


def ablate_heads(model, heads: dict[int, list[int]] | list[tuple[int, int]]):
    """Switch heads off inside the block: `with ablate_heads(model, {1: [0, 2]}): ...` or `[(1, 0), (1, 2)]`.

    A hook on `blocks.{l}.attn.hook_z` (B, T, H, d_head) zeroes the ablated heads' outputs before the output
    projection (`course.capture.hooks`); it is removed afterwards, even on error.
    """
    pairs = list(heads.items()) if isinstance(heads, dict) else [(l, [h]) for l, h in heads]
    L, H = len(model.blocks), model.config.n_heads
    off: dict[int, list[int]] = {}
    for layer, hs in pairs:
        if not -L <= layer < L:
            raise ValueError(f"layer={layer} out of range for a model with {L} layers")
        bad = [h for h in hs if not 0 <= h < H]
        if bad:
            raise ValueError(f"heads {bad} out of range [0, {H}) in layer {layer}")
        off.setdefault(layer % L, []).extend(hs)
    prefix = "decoder." if hasattr(model, "decoder") else ""
    return hooks(model, [(f"{prefix}blocks.{l}.attn.hook_z", zero_heads(hs)) for l, hs in off.items()])


def zero_heads(heads: list[int]):
    """A hook for `attn.hook_z` (B, T, H, d_head) that zeroes the given heads."""

    def hook(z, point):
        keep = torch.ones(z.shape[-2], dtype=z.dtype, device=z.device)
        keep[list(heads)] = 0.0
        return z * keep[:, None]  # (H, 1) broadcast over (B, T, H, d_head)

    return hook


@torch.no_grad()
def head_ablation_effects(model, x, y, loss_mask=None) -> torch.Tensor:
    """(L, H): increase of the next-token loss on (x, y) when each head alone is ablated."""
    base = lm_loss(model(x), y, loss_mask)
    L, H = len(model.blocks), model.config.n_heads
    out = torch.zeros(L, H)
    for layer in range(L):
        for head in range(H):
            with ablate_heads(model, {layer: [head]}):
                out[layer, head] = lm_loss(model(x), y, loss_mask) - base
    return out


def max_causal_entropy(T: int) -> float:
    """Largest possible mean entropy of a causal head over T queries: mean of log(i + 1)."""
    return sum(math.log(i + 1) for i in range(T)) / T
