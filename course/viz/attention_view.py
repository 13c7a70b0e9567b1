"""View model of the attention explorer: (layer, head, stage, mask on/off) -> the matrix to draw. No widgets.

Stages of one head (queries on rows, keys on columns):
  scores   S = q·kᵀ/√d_head (+ ALiBi / relative bias), every cell, before any mask
  masked   S with the cells the model may not attend set to -inf — shown as grey "N/A", never as 0
  softmax  the attention weights; each unmasked row sums to 1, masked cells N/A (their weight is 0)
With the mask switched off, `masked` equals `scores` and `softmax` is what attention *without* the mask would
compute (the "forgot the causal mask" bug: future tokens leak).

    view = AttentionView.from_model(model, tokens, labels)   # any DecoderLM / EncoderLM, token ids (T,)
    hm = view.heatmap(layer=1, head=2, stage="softmax")     # .z (T, T) with NaN = N/A, .title, .zmin, .zmax
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..attention import attention_scores, repeat_kv, softmax_rows
from ..capture import run_with_cache
from .heatmap import PROB_SCALE, SCORE_SCALE, token_labels

STAGES = {"scores": "scores q·kᵀ/√d", "masked": "masked scores", "softmax": "softmax weights"}


@dataclass
class Heatmap:
    """One matrix ready to draw: z (T_q, T_k) float with NaN where N/A, and how to colour it."""

    z: np.ndarray
    allowed: np.ndarray  # (T_q, T_k) bool, False = drawn as a grey masked cell
    zmin: float
    zmax: float
    colorscale: str
    title: str


def _as_ids(tokens) -> torch.Tensor:
    """Token ids (T,) / (1, T) / list -> (1, T) long tensor."""
    idx = torch.as_tensor(tokens, dtype=torch.long)
    if idx.dim() == 2 and idx.shape[0] == 1:
        idx = idx[0]
    if idx.dim() != 1 or idx.numel() == 0:
        raise ValueError(
            f"tokens must be a non-empty sequence of ids (T,) or (1, T), got shape {tuple(idx.shape)}"
        )
    return idx[None]


def unmasked_scores(model, cache, T: int) -> torch.Tensor:
    """(L, H, T, T) scores before masking, recomputed from the captured q, k (after RoPE) and the model's
    bias."""
    bias = model.transformer.distance_bias(T, T)  # (H, T, T) or None
    out = []
    for layer in range(len(model.blocks)):
        name = "attn.hook_rot_{}" if f"blocks.{layer}.attn.hook_rot_q" in cache else "attn.hook_{}"
        q = cache[name.format("q"), layer].transpose(1, 2)  # (B, H, T, d_head)
        k = cache[name.format("k"), layer].transpose(1, 2)  # (B, H_kv, T, d_head)
        k = repeat_kv(k, q.shape[1] // k.shape[1])
        out.append(attention_scores(q, k, bias=bias)[0])
    return torch.stack(out)


class AttentionView:
    """Scores, mask and labels of one model run; answers what each (layer, head, stage, mask) shows."""

    def __init__(self, scores, allowed, labels, key_labels=None):
        """scores (L, H, T_q, T_k) before masking; allowed: bool broadcastable to it (True = may attend)."""
        self.scores = torch.as_tensor(scores, dtype=torch.float64)
        if self.scores.dim() != 4:
            raise ValueError(
                f"scores must be (layers, heads, T_q, T_k), got shape {tuple(self.scores.shape)}"
            )
        self.allowed = torch.as_tensor(allowed, dtype=torch.bool).expand_as(self.scores)
        self.n_layers, self.n_heads, self.T_q, self.T_k = self.scores.shape
        self.q_labels = [str(s) for s in labels]
        self.k_labels = self.q_labels if key_labels is None else [str(s) for s in key_labels]
        if (len(self.q_labels), len(self.k_labels)) != (self.T_q, self.T_k):
            raise ValueError(
                f"got {len(self.q_labels)} query and {len(self.k_labels)} key labels for scores of "
                f"T_q={self.T_q}, T_k={self.T_k}"
            )
        finite = self.scores.masked_fill(~self.allowed, 0).abs()
        self.score_range = max(float(finite.max()), 1e-6)  # symmetric colour range shared by all heads

    @classmethod
    @torch.no_grad()
    def from_model(cls, model, tokens, labels=None, **forward_kwargs) -> AttentionView:
        """Run a course model (DecoderLM, EncoderLM) on token ids and capture every layer's attention."""
        if not hasattr(model, "transformer"):
            raise ValueError(
                f"{type(model).__name__} is not supported: expected a DecoderLM or EncoderLM "
                f"(a model with a `.transformer` stack)"
            )
        idx = _as_ids(tokens).to(next(model.parameters()).device)
        labels = token_labels(idx[0].tolist(), labels)
        was_training = model.training
        model.eval()
        try:
            _, cache = run_with_cache(model, idx, names_filter=lambda n: ".attn.hook_" in n, **forward_kwargs)
        finally:
            model.train(was_training)
        T = idx.shape[1]
        allowed = torch.isfinite(cache.stack("attn_scores")[:, 0])  # (L, H, T, T): -inf marks masked cells
        return cls(unmasked_scores(model, cache, T).cpu(), allowed.cpu(), labels)

    # --- one head
    # ----------------------------------------------------------------------------------------------
    def check(self, layer: int, head: int) -> None:
        if not 0 <= layer < self.n_layers:
            raise ValueError(f"layer={layer} is out of range: expected 0..{self.n_layers - 1}")
        if not 0 <= head < self.n_heads:
            raise ValueError(f"head={head} is out of range: expected 0..{self.n_heads - 1}")

    def weights(self, masked: bool = True) -> torch.Tensor:
        """(L, H, T_q, T_k) attention weights, with the mask or (masked=False) without it."""
        s = self.scores.masked_fill(~self.allowed, float("-inf")) if masked else self.scores
        return softmax_rows(s)

    def heatmap(self, layer: int, head: int, stage: str = "softmax", masked: bool = True) -> Heatmap:
        self.check(layer, head)
        if stage not in STAGES:
            raise ValueError(f"stage={stage!r} is not one of {list(STAGES)}")
        hidden = (
            ~self.allowed[layer, head].numpy()
            if masked and stage != "scores"
            else np.zeros((self.T_q, self.T_k), dtype=bool)
        )
        if stage == "softmax":
            z = self.weights(masked)[layer, head].numpy().copy()
            zmin, zmax, scale = 0.0, 1.0, PROB_SCALE
        else:
            z = self.scores[layer, head].numpy().copy()
            zmin, zmax, scale = -self.score_range, self.score_range, SCORE_SCALE
        z[hidden] = np.nan
        title = f"Layer {layer} · head {head} · {STAGES[stage]}" + ("" if masked else " · mask OFF")
        return Heatmap(z, ~hidden, zmin, zmax, scale, title)

    # --- overview of every (layer, head)
    # -----------------------------------------------------------------------
    def tile_shape(self, max_tile: int) -> tuple[int, int, int]:
        """(pool factor, tile rows, tile cols): tiles are the patterns mean-pooled to at most max_tile
        cells."""
        f = max(1, math.ceil(max(self.T_q, self.T_k) / max_tile))
        return f, math.ceil(self.T_q / f), math.ceil(self.T_k / f)

    def overview(self, max_tile: int = 32, masked: bool = True) -> np.ndarray:
        """(L·tq + L-1, H·tk + H-1) softmax patterns of all heads, tiles separated by NaN gutters; masked
        cells NaN, or (masked=False) the weights attention would compute without the mask."""
        f, tq, tk = self.tile_shape(max_tile)
        w = self.weights(masked)
        w = (w.masked_fill(~self.allowed, float("nan")) if masked else w).numpy()
        pad = np.full((self.n_layers, self.n_heads, tq * f, tk * f), np.nan)
        pad[:, :, : self.T_q, : self.T_k] = w
        blocks = pad.reshape(self.n_layers, self.n_heads, tq, f, tk, f)
        count = np.isfinite(blocks).sum(axis=(3, 5))
        total = np.nansum(blocks, axis=(3, 5))
        tiles = np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)
        out = np.full((self.n_layers * (tq + 1) - 1, self.n_heads * (tk + 1) - 1), np.nan)
        for layer in range(self.n_layers):
            for head in range(self.n_heads):
                r, c = layer * (tq + 1), head * (tk + 1)
                out[r : r + tq, c : c + tk] = tiles[layer, head]
        return out

    def in_tiles(self, max_tile: int = 32) -> np.ndarray:
        """Bool array of the overview's shape: True on the cells of a tile, False on the gutters."""
        _, tq, tk = self.tile_shape(max_tile)
        rows = np.arange(self.n_layers * (tq + 1) - 1) % (tq + 1) < tq
        cols = np.arange(self.n_heads * (tk + 1) - 1) % (tk + 1) < tk
        return rows[:, None] & cols[None, :]

    def tile_at(self, row: int, col: int, max_tile: int = 32) -> tuple[int, int] | None:
        """(layer, head) of an overview cell, None for a gutter."""
        _, tq, tk = self.tile_shape(max_tile)
        layer, r = divmod(int(row), tq + 1)
        head, c = divmod(int(col), tk + 1)
        if r == tq or c == tk or not (0 <= layer < self.n_layers and 0 <= head < self.n_heads):
            return None
        return layer, head

    def tile_box(self, layer: int, head: int, max_tile: int = 32) -> tuple[float, float, float, float]:
        """(x0, x1, y0, y1) in overview coordinates around the tile of (layer, head), for a highlight."""
        self.check(layer, head)
        _, tq, tk = self.tile_shape(max_tile)
        x0, y0 = head * (tk + 1) - 0.5, layer * (tq + 1) - 0.5
        return x0, x0 + tk, y0, y0 + tq

    def tile_centres(self, max_tile: int = 32) -> tuple[list[float], list[float]]:
        """Overview tick positions: column centres of the heads, row centres of the layers."""
        _, tq, tk = self.tile_shape(max_tile)
        return (
            [h * (tk + 1) + (tk - 1) / 2 for h in range(self.n_heads)],
            [layer * (tq + 1) + (tq - 1) / 2 for layer in range(self.n_layers)],
        )
