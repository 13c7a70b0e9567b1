"""Catalogue of known mistakes: each recognised by its signature (the known-wrong variant recomputed on the
same inputs) and named in plain words. The harness compares a wrong answer against these variants on failure.

Every `*_variants` function returns {catalogue key: the value that mistake would produce}. Variants are built
from `course` functions with one thing changed, so the right answer is never re-implemented here.
"""

from __future__ import annotations

import copy

import torch

from course.attention import attention_scores, scaled_dot_product_attention, softmax_rows
from course.costs import attention_params, bytes_per_element, kv_cache_bytes, mlp_params
from course.masks import causal_mask, combine, cross_mask, decoder_mask, encoder_mask, padding_mask
from course.norms import layer_norm, rms_norm

CATALOGUE = {
    "softmax_axis": "softmax was taken over the wrong axis: normalise over the keys (the last "
    "axis, dim=-1) so "
    "that each query's row of weights sums to 1.",
    "no_scale": "the scores were not divided by √d_k: compute q·kᵀ / sqrt(d_k), where d_k = q.shape[-1].",
    "scale_by_dk": "the scores were divided by d_k instead of √d_k.",
    "weights_not_output": "the weights were returned where the output belongs (or vice versa): "
    "output = weights @ v.",
    "mask_after_softmax": "the mask was applied after the softmax: blocked scores must be set to "
    "−∞ *before* the "
    "softmax, otherwise the remaining weights no longer sum to 1.",
    "mask_zero_fill": "blocked scores were set to 0 (or multiplied by 0) instead of −∞: a score of "
    "0 still gets "
    "weight exp(0) after the softmax.",
    "nan_masked_rows": "a fully masked row produced NaN (softmax of a row of −∞): such rows must "
    "give all-zero "
    "weights, e.g. with `weights.nan_to_num(0.0)`.",
    "masked_rows_uniform": "a fully masked row got uniform weights (a large negative number such "
    "as −1e9 instead of "
    "−∞, or no special case): a query that may attend to nothing must get all-zero weights.",
    "mask_polarity": "the mask polarity is inverted: in this course True means 'may attend' and False means "
    "'blocked'.",
    "diagonal_excluded": "off-by-one diagonal: each position may attend to itself (j <= i), so the diagonal "
    "must be True (`tril(diagonal=0)`).",
    "diagonal_leak": "off-by-one diagonal: position i may see position i + 1, a leak from the future; use "
    "`torch.ones(T, T).tril()` (diagonal=0).",
    "input_modified": "the input tensor was modified in place (e.g. `masked_fill_`): use the out-of-place "
    "version so the caller's scores stay intact.",
    "view_without_transpose": "the heads were split with `view`/`reshape` alone: (B, T, d_model) must become "
    "(B, T, H, d_head) and then be transposed to (B, H, T, d_head); a bare view to "
    "(B, H, T, d_head) mixes heads and positions.",
    "heads_interleaved": "the features were split the wrong way round: head h owns the contiguous slice "
    "h·d_head:(h+1)·d_head, i.e. view(B, T, H, d_head), not view(B, T, d_head, H).",
    "merge_without_transpose": "the heads were merged with `reshape` alone: transpose (B, H, T, "
    "d_head) back to "
    "(B, T, H, d_head) before flattening the last two axes.",
    "biases_miscounted": "the biases were miscounted: each linear layer with bias adds one bias per output "
    "feature (Q: d_model, K and V: n_kv_heads·d_head each, O: d_model).",
    "gqa_ignored": "grouped-query attention was ignored: K and V project to n_kv_heads·d_head features, not "
    "d_model.",
    "kv_heads_times_dmodel": "K and V were sized n_kv_heads·d_model: each KV head has d_head = "
    "d_model / n_heads "
    "features, so K and V project to n_kv_heads·d_head.",
    "swiglu_two_matrices": "SwiGLU has three matrices (gate, up, down), not two: 3·d_model·d_ff weights.",
    "ratio_inverted": "the ratio is inverted: divide the MLP's parameters by attention's.",
    "eps_outside_sqrt": "ε was added outside the square root: divide by sqrt(var + ε), not sqrt(var) + ε.",
    "unbiased_variance": "the unbiased variance (divide by D − 1) was used: LayerNorm divides by D "
    "(`unbiased=False` / `correction=0`).",
    "no_mean_subtraction": "the mean was not subtracted: LayerNorm centres the vector before dividing.",
    "rms_subtracts_mean": "RMSNorm subtracted the mean: RMSNorm only divides by sqrt(mean(x²) + "
    "ε); there is no "
    "centring (that is LayerNorm).",
    "affine_missing": "the learned scale (and bias) were not applied after normalising: y = x̂·weight + bias.",
    "pre_post_swapped": "Pre-LN and Post-LN are swapped: Pre-LN is x + F(LN(x)) (the stream itself is never "
    "normalised); Post-LN is LN(x + F(x)).",
    "norm_twice": "the stream itself went through the norm: Pre-LN adds F(LN(x)) to the *un-normalised* x.",
    "kv_counted_once": "K and V were counted once: the cache stores both keys and values, a factor of 2.",
    "bytes_per_dtype": "the bytes per element are wrong: fp32 = 4, fp16/bf16 = 2, int8 = 1 byte (bits ÷ 8).",
    "bits_not_bytes": "bits were counted instead of bytes: divide the dtype's bits by 8.",
    "heads_not_kv_heads": "the cache was sized with n_heads: under GQA/MQA only n_kv_heads K/V "
    "heads are cached.",
    "causal_in_encoder": "the encoder's self-attention was made causal: an encoder is bidirectional; only "
    "padding keys are blocked.",
    "causal_missing": "the decoder's self-attention is not causal: position i may only attend to "
    "keys j <= i.",
    "padding_missing": "the padding was ignored: keys at padding positions must be blocked.",
    "padding_on_queries": "padding was applied to the queries (rows) instead of the keys "
    "(columns): block the "
    "padded *keys*; padded query rows are ignored by the loss.",
    "cross_uses_target_padding": "the cross-attention mask used the target's padding: decoder "
    "queries read the "
    "*encoder* outputs, so block the source's padded positions.",
    "causal_in_cross": "cross-attention was made causal: every decoder position may read every real source "
    "token.",
    # the capstone (course.grading.capstone computes these signatures)
    "kv_groups_interleaved": "the KV heads were shared the wrong way: query head h reads KV head h // group "
    "(consecutive query heads share one KV head), so repeat each KV head with "
    "`repeat_interleave(group, dim=1)`; `repeat(1, group, 1, 1)` gives query head h the KV head "
    "h % n_kv_heads.",
    "cache_mask_top_left": "with cached keys the causal mask must be shifted: new query i sits at position "
    "T_past + i and may read keys 0 ... T_past + i (`tril(diagonal=T_k - T)`), not only keys 0 ... i.",
    "gelu_exact": "the MLP used the exact GELU: GPT-2 (and the course's mlp='gelu_tanh') uses the tanh "
    "approximation, `F.gelu(x, approximate='tanh')`.",
    "final_norm_missing": "the final norm was forgotten: a Pre-LN stack normalises the last block's output "
    "(ln_f) before the LM head.",
    "head_not_tied": "the logits are a linear map of the right hidden states, but not through the token "
    "embedding: with tie_weights the LM head *is* tok_emb.weight (`lm_head.weight = tok_emb.weight`), and "
    "the checkpoint stores it once.",
    "tied_when_untied": "the head was tied although config.tie_weights is False: this model has its own "
    "lm_head.weight, separate from tok_emb.weight.",
    "positions_not_offset": "the positions were not offset in decode: a token fed after T_past cached ones "
    "sits at position T_past (RoPE angles or learned position embeddings start at the cache length).",
    "temperature_after_softmax": "the temperature was applied after the softmax: divide the *logits* by the "
    "temperature, then take the softmax.",
    "top_k_ties": "top-k dropped tokens tied with the k-th largest logit: keep every token whose logit is "
    ">= the k-th largest (`logits < kth` are removed), so ties survive together.",
    "not_renormalised": "the filtered probabilities were not renormalised: set the removed *logits* to -inf "
    "and take the softmax again (or divide by the kept mass), so they sum to 1.",
    "top_p_boundary": "top-p kept the wrong boundary token: sort by probability and keep each token while "
    "the mass ranked *above* it is < top_p, so the token that crosses top_p is kept and nothing after it.",
}


def message(key: str) -> str:
    """Plain-words diagnosis of a variant key ("mistake" or "mistake:which variant")."""
    return CATALOGUE[key.split(":")[0]]


# --- exercise 1: scaled dot-product attention
# ----------------------------------------------------------------
def sdpa_variants(q, k, v, part: int) -> dict[str, torch.Tensor]:
    """The output (part=0) or the weights (part=1) each known mistake produces."""
    scores = attention_scores(q, k)
    wrong_axis = torch.softmax(scores, dim=-2)
    out = {
        "softmax_axis": (wrong_axis @ v, wrong_axis),
        "no_scale": scaled_dot_product_attention(q, k, v, scale=1.0),
        "scale_by_dk": scaled_dot_product_attention(q, k, v, scale=1.0 / q.shape[-1]),
    }
    _, w = scaled_dot_product_attention(q, k, v)
    if w.shape[-1] == v.shape[-1]:
        out["weights_not_output"] = (w, w @ v)
    return {key: pair[part] for key, pair in out.items()}


# --- exercise 2: causal mask and masked softmax
# --------------------------------------------------------------
def causal_mask_variants(T: int) -> dict[str, torch.Tensor]:
    ones = torch.ones(T, T, dtype=torch.bool)
    return {
        "mask_polarity": ~causal_mask(T),
        "diagonal_excluded": ones.tril(-1),
        "diagonal_leak": ones.tril(1),
    }


def masked_weights_variants(scores: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Weights (…, T_q, T_k) produced by the usual masking mistakes."""
    neg_inf = float("-inf")
    return {
        "mask_after_softmax": torch.softmax(scores, -1) * mask,
        "mask_zero_fill": torch.softmax(scores.masked_fill(~mask, 0.0), -1),
        "nan_masked_rows": torch.softmax(scores.masked_fill(~mask, neg_inf), -1),
        "masked_rows_uniform": torch.softmax(scores.masked_fill(~mask, -1e9), -1),
        "mask_polarity": softmax_rows(scores.masked_fill(mask, neg_inf)),
    }


# --- exercise 3: heads
# ---------------------------------------------------------------------------------------
def split_heads_variants(x: torch.Tensor, n_heads: int) -> dict[str, torch.Tensor]:
    B, T, D = x.shape
    return {
        "view_without_transpose": x.reshape(B, n_heads, T, D // n_heads),
        "heads_interleaved": x.reshape(B, T, D // n_heads, n_heads).permute(0, 3, 1, 2),
    }


def merge_heads_variants(x: torch.Tensor) -> dict[str, torch.Tensor]:
    B, H, T, d = x.shape
    return {"merge_without_transpose": x.reshape(B, T, H * d)}


# --- exercises 4 and 5: parameter counts
# ---------------------------------------------------------------------
def attention_params_variants(
    d_model: int, n_heads: int, n_kv_heads: int | None, bias: bool
) -> dict[str, int]:
    n_kv = n_heads if n_kv_heads is None else n_kv_heads
    d_kv = n_kv * (d_model // n_heads)
    weights = attention_params(d_model, n_heads, n_kv, bias=False)
    out = {
        "gqa_ignored": attention_params(d_model, n_heads, n_heads, bias),
        "kv_heads_times_dmodel": 2 * d_model * d_model + 2 * d_model * n_kv * d_model,
    }
    if bias:
        out["biases_miscounted"] = weights  # biases forgotten
        out["biases_miscounted:4d"] = weights + 4 * d_model
        out["biases_miscounted:kv"] = weights + 2 * d_model + d_kv  # one of K/V forgotten
    return out


def mlp_params_variants(d_model: int, d_ff: int, kind: str, bias: bool) -> dict[str, int]:
    out = {}
    if kind == "swiglu":
        out["swiglu_two_matrices"] = mlp_params(d_model, d_ff, "gelu", bias)
    if bias:
        right = mlp_params(d_model, d_ff, kind, bias)
        out["biases_miscounted"] = mlp_params(d_model, d_ff, kind, False)
        out["biases_miscounted:2ff"] = right + d_ff
        out["biases_miscounted:ff"] = right - d_model
    return out


def ratio_variants(mlp: int, attn: int) -> dict[str, float]:
    return {"ratio_inverted": attn / mlp}


# --- exercise 6: norms
# ---------------------------------------------------------------------------------------
def layer_norm_variants(x, weight, bias, eps) -> dict[str, torch.Tensor]:
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    affine = lambda y: y * weight + bias
    return {
        "eps_outside_sqrt": affine((x - mean) / (var.sqrt() + eps)),
        "unbiased_variance": affine((x - mean) / torch.sqrt(x.var(-1, keepdim=True, unbiased=True) + eps)),
        "no_mean_subtraction": affine(rms_norm(x, eps=eps)),
        "affine_missing": layer_norm(x, eps=eps),
    }


def rms_norm_variants(x, weight, eps) -> dict[str, torch.Tensor]:
    rms = x.pow(2).mean(-1, keepdim=True).sqrt()
    return {
        "eps_outside_sqrt": x / (rms + eps) * weight,
        "rms_subtracts_mean": layer_norm(x, eps=eps) * weight,
        "rms_subtracts_mean:unscaled": rms_norm(x - x.mean(-1, keepdim=True), weight, eps),
        "affine_missing": rms_norm(x, eps=eps),
    }


# --- exercise 8: KV cache
# ------------------------------------------------------------------------------------
def kv_cache_variants(n_layers, seq_len, n_heads, n_kv_heads, d_head, batch_size, dtype) -> dict[str, int]:
    b = bytes_per_element(dtype)
    right = kv_cache_bytes(n_layers, seq_len, n_kv_heads, d_head, batch_size, b)
    out = {
        "kv_counted_once": right // 2,
        "bits_not_bytes": right * 8,
        "bytes_per_dtype": kv_cache_bytes(
            n_layers, seq_len, n_kv_heads, d_head, batch_size, 4 if b != 4 else 2
        ),
    }
    if n_heads != n_kv_heads:
        out["heads_not_kv_heads"] = kv_cache_bytes(n_layers, seq_len, n_heads, d_head, batch_size, b)
    return out


# --- exercise 9: masks of the three architectures
# ------------------------------------------------------------
def encoder_mask_variants(src_is_token) -> dict[str, torch.Tensor]:
    T = src_is_token.shape[1]
    return {
        "causal_in_encoder": combine(causal_mask(T), padding_mask(src_is_token)),
        "padding_missing": encoder_mask(T=T),
        "padding_on_queries": src_is_token[:, None, :, None].expand(-1, 1, T, T),
        "mask_polarity": ~encoder_mask(src_is_token),
    }


def decoder_mask_variants(tgt_is_token) -> dict[str, torch.Tensor]:
    T = tgt_is_token.shape[1]
    return {
        "causal_missing": encoder_mask(tgt_is_token),
        "padding_missing": causal_mask(T),
        "padding_on_queries": combine(causal_mask(T), tgt_is_token[:, None, :, None]),
        "mask_polarity": ~decoder_mask(T, tgt_is_token),
        "diagonal_excluded": combine(torch.ones(T, T, dtype=torch.bool).tril(-1), padding_mask(tgt_is_token)),
    }


def cross_mask_variants(src_is_token, tgt_is_token) -> dict[str, torch.Tensor]:
    S, T = src_is_token.shape[1], tgt_is_token.shape[1]
    out = {
        "causal_in_cross": combine(causal_mask(T, S), cross_mask(src_is_token, T)) if S >= T else None,
        "mask_polarity": ~cross_mask(src_is_token, T),
        "padding_missing": torch.ones(T, S, dtype=torch.bool),
    }
    out["cross_uses_target_padding"] = cross_mask(
        tgt_is_token, T
    )  # (B, 1, T, T): recognised by value if S == T
    return {k: v for k, v in out.items() if v is not None}


# --- exercise 7: Pre-LN vs Post-LN
# ---------------------------------------------------------------------------
def block_variants(block, x) -> dict[str, torch.Tensor]:
    """Outputs of a `course.blocks.Block`'s parts wired the wrong way."""
    swapped = copy.deepcopy(block)
    swapped.pre_norm = not block.pre_norm
    h = block.ln1(x)
    h = h + block.attn(h)
    return {"pre_post_swapped": swapped(x), "norm_twice": h + block.mlp(block.ln2(h))}


def diagnosis_first(text: str) -> str:
    """'weights: differs ... Likely mistake: X' -> 'Likely mistake: X (weights: differs ...)': what to fix
    first."""
    head, sep, diagnosis = text.partition(" Likely mistake: ")
    if not sep and text.startswith("Likely mistake: "):
        return text
    return f"Likely mistake: {diagnosis} ({head.rstrip('.')})" if sep else text
