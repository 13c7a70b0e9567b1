"""The capstone's trusted side: reference models, the weights sent to the learner's GPT, and the signatures of
the classic capstone mistakes (each recomputed on the test's own inputs, as in `course.grading.diagnoses`).

    model = reference("gqa", seed=1)             # a float64 course.DecoderLM; no norm is the identity
    weights = state(model)                        # float32, DecoderLM's names, a tied head stored once
    logits_variants(model, idx)                   # {mistake: logits it produces}
    decode_logits(model, idx, n_prefill, offset=False)   # a cached decode whose new positions start at 0

References are `course` modules (`DecoderLM`, `Block`, `MultiHeadAttention`, `generation.next_token_probs`);
only the wrong variants are computed here.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F

from course.attention import merge_heads, softmax_rows, split_heads
from course.blocks import Block
from course.config import ModelConfig
from course.feedforward import MLP
from course.generation import next_token_probs
from course.kv_cache import KVCache
from course.masks import causal_mask
from course.models import DecoderLM
from course.positional import apply_rope, rope_angles

SMALL = dict(vocab_size=40, context_length=32, n_layers=2, mlp="gelu_tanh", dropout=0.0)
CONFIGS = {  # the hidden tests' models: GQA and MQA, Post-LN, RMSNorm, learned positions, untied, other sizes
    "mha": ModelConfig(**SMALL, d_model=32, n_heads=4, positional="rope"),
    "gqa": ModelConfig(**SMALL, d_model=32, n_heads=4, n_kv_heads=2, positional="rope"),
    "mqa-post": ModelConfig(
        **SMALL, d_model=24, n_heads=3, n_kv_heads=1, positional="learned", norm_placement="post", bias=False
    ),
    "gqa-rms-untied": ModelConfig(
        **{**SMALL, "n_layers": 3},
        d_model=48,
        n_heads=6,
        n_kv_heads=3,
        positional="rope",
        norm="rmsnorm",
        bias=False,
        tie_weights=False,
    ),
}
LOGITS_ATOL, LOGITS_RTOL = 1e-4, 1e-4  # the learner's fp32 logits against the fp64 reference


def reference(name: str, seed: int = 0, **changes) -> DecoderLM:
    """A float64 DecoderLM of CONFIGS[name] (with `changes`) in eval mode, weights drawn from `seed` and
    perturbed (norm weights and biases are not 1 and 0, so a forgotten or extra norm shows)."""
    torch.manual_seed(seed)
    model = DecoderLM(CONFIGS[name].replace(**changes)).double().eval()
    with torch.no_grad():
        for i, p in enumerate(model.parameters()):
            gen = torch.Generator().manual_seed(seed * 1000 + i)
            p.add_(torch.randn(p.shape, generator=gen, dtype=torch.float64) * 0.3)
    return model


def text_model() -> DecoderLM:
    """The shipped text model (course/weights/text.*), float64, eval mode."""
    from course.pretrained import load

    return load("text")[0].double().eval()


def state(module: torch.nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    """float32 copies of `module`'s tensors under their names (minus `prefix`), a tied weight once: what
    `course/weights/*.safetensors` holds."""
    out, seen = {}, set()
    for name, tensor in module.state_dict().items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            out[name.removeprefix(prefix)] = tensor.detach().float().clone()
    return out


def tokens(model: DecoderLM, B: int, T: int, seed: int) -> torch.Tensor:
    return torch.randint(0, model.config.vocab_size, (B, T), generator=torch.Generator().manual_seed(seed))


def rope_for(config, T: int, offset: int = 0):
    if config.positional != "rope":
        return None
    return rope_angles(torch.arange(offset, offset + T), config.d_head, config.rope_theta)


# --- part 1: attention --------------------------------------------------------------------------------------
def attention_full(attn, x, rope, *, group: str = "contiguous", mask: str = "causal"):
    """Outputs (B, T, D) of a course MultiHeadAttention computed by hand, with the KV heads shared by `group`
    ("contiguous": query head h reads KV head h // g; "interleaved": h % g, the `repeat` mistake) and `mask`
    ("causal", "none", or "top_left": a causal mask not shifted by the cached positions)."""
    q, k, v = (
        split_heads(p(x), n)
        for p, n in (
            (attn.q_proj, attn.n_heads),
            (attn.k_proj, attn.n_kv_heads),
            (attn.v_proj, attn.n_kv_heads),
        )
    )
    if rope is not None:
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
    g = attn.n_heads // attn.n_kv_heads
    if group == "contiguous":
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    else:
        k, v = k.repeat(1, g, 1, 1), v.repeat(1, g, 1, 1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    T = x.shape[1]
    allowed = {"causal": causal_mask(T), "none": None}.get(mask)
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
    return attn.o_proj(merge_heads(softmax_rows(scores) @ v))


def past_kv(attn, x, rope) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached keys (RoPE applied) and values (B, H_kv, T, d_head) of positions x (B, T, D)."""
    k = split_heads(attn.k_proj(x), attn.n_kv_heads)
    if rope is not None:
        k = apply_rope(k, *rope)
    return k, split_heads(attn.v_proj(x), attn.n_kv_heads)


def attention_variants(attn, x, rope, n_past: int = 0) -> dict[str, torch.Tensor]:
    """Outputs of the new positions x[:, n_past:] that the attention mistakes produce."""
    out = {
        "kv_groups_interleaved": attention_full(attn, x, rope, group="interleaved"),
        "causal_missing": attention_full(attn, x, rope, mask="none"),
    }
    out = {k: v[:, n_past:] for k, v in out.items()}
    if n_past:
        new = x[:, n_past:]
        T, T_k = new.shape[1], x.shape[1]
        q = split_heads(attn.q_proj(new), attn.n_heads)
        k, v = past_kv(attn, x, rope)
        if rope is not None:
            q = apply_rope(q, rope[0][n_past:], rope[1][n_past:])
        g = attn.n_heads // attn.n_kv_heads
        k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        top_left = torch.ones(T, T_k, dtype=torch.bool).tril()
        weights = softmax_rows(scores.masked_fill(~top_left, float("-inf")))
        out["cache_mask_top_left"] = attn.o_proj(merge_heads(weights @ v))
    return out


# --- part 2: the block --------------------------------------------------------------------------------------
def block_output(block: Block, x, rope, *, pre: bool | None = None, exact_gelu: bool = False):
    """A course Block's output with causal self-attention; `pre` overrides its norm placement, `exact_gelu`
    swaps GPT-2's tanh GELU for the exact one."""
    block = copy.deepcopy(block)
    if pre is not None:
        block.pre_norm = pre
    if exact_gelu and isinstance(block.mlp, MLP):
        block.mlp.act = F.gelu
    return block(x, rope=rope, is_causal=True)


def block_variants(block: Block, x, rope) -> dict[str, torch.Tensor]:
    h = block.ln1(x)
    h = h + block.attn(h, rope=rope, is_causal=True)
    return {
        "pre_post_swapped": block_output(block, x, rope, pre=not block.pre_norm),
        "norm_twice": h + block.mlp(block.ln2(h)),
        "gelu_exact": block_output(block, x, rope, exact_gelu=True),
    }


# --- part 3: the decoder ------------------------------------------------------------------------------------
def hidden(model: DecoderLM, idx, *, final_norm: bool = True) -> torch.Tensor:
    """The last block's output (B, T, D), through the final norm when `final_norm` and the model has one."""
    stack = model.transformer
    ln_f, stack.ln_f = stack.ln_f, (stack.ln_f if final_norm else None)
    try:
        return stack(idx)
    finally:
        stack.ln_f = ln_f


def logits_variants(model: DecoderLM, idx) -> dict[str, torch.Tensor]:
    """Logits the decoder mistakes produce. (A final norm added to a Post-LN stack, or an untied head never
    loaded, have no tensor in the checkpoint: the learner's `load_gpt` names the first, `head_not_tied` the
    second.)"""
    out = {}
    if model.transformer.ln_f is not None:
        out["final_norm_missing"] = model.lm_head(hidden(model, idx, final_norm=False))
    if not model.config.tie_weights:  # tied anyway: loading both tensors into one matrix keeps the head's
        tied = copy.deepcopy(model)
        tied.transformer.tok_emb.weight = tied.lm_head.weight
        out["tied_when_untied"] = tied(idx)
    return out


def expect_logits(got, model: DecoderLM, idx, name: str) -> None:
    """The learner's logits (B, T, V) against `model`'s, within LOGITS_ATOL / LOGITS_RTOL; on failure the
    message names the mistake (a variant, or a head that is not the tied embedding)."""
    from course.grading import harness

    try:
        harness.expect_close(got, model(idx), name, logits_variants(model, idx), LOGITS_ATOL, LOGITS_RTOL)
    except AssertionError as e:
        if "Likely mistake" in str(e):
            raise
        raise AssertionError(f"{e}{head_not_tied(model, idx, got)}") from None


def head_not_tied(model: DecoderLM, idx, logits) -> str:
    """' Likely mistake: ...' when `logits` are an affine map of the right final hidden states, but not the
    model's head: the learner's head is a fresh matrix (not tied to the token embedding, or not loaded)."""
    if not isinstance(logits, torch.Tensor) or logits.shape != (*idx.shape, model.config.vocab_size):
        return ""
    h = hidden(model, idx).flatten(0, 1)
    if h.shape[0] <= h.shape[1] + 1:
        return ""
    design = torch.cat((h, torch.ones(h.shape[0], 1, dtype=h.dtype)), 1)  # (N, D + 1)
    y = logits.detach().double().flatten(0, 1)
    fit = design @ torch.linalg.lstsq(design, y).solution
    if (fit - y).abs().max() > 1e-3 * (1 + y.abs().max()):
        return ""
    from course.grading.diagnoses import message

    return f" Likely mistake: {message('head_not_tied')}"


def decode_logits(model: DecoderLM, idx, n_prefill: int, *, offset: bool = True) -> torch.Tensor:
    """Logits (B, T, V) of a KV-cached decode: the first `n_prefill` tokens at once, then one at a time. With
    offset=False every step's positions start at 0 again (the mistake)."""
    B, T = idx.shape
    cache = KVCache.for_model(model, B, max_len=T)
    chunks = [idx[:, :n_prefill]] + [idx[:, t : t + 1] for t in range(n_prefill, T)]
    out = []
    for chunk in chunks:
        start = cache.length if offset else 0
        out.append(model(chunk, pos=torch.arange(start, start + chunk.shape[1]), cache=cache))
    return torch.cat(out, 1)


def expect_greedy(model: DecoderLM, prompt, got, max_new_tokens: int, name: str) -> None:
    """`got` (B, T + n) continues `prompt` greedily under `model`: each new token has the largest logit
    (within LOGITS_ATOL, so a near-tie may go either way) given the tokens before it."""
    from course.grading import harness

    got = harness._tensor(got, name)
    B, T = prompt.shape
    if tuple(got.shape) != (B, T + max_new_tokens) or got.dtype not in (torch.long, torch.int32, torch.int64):
        raise AssertionError(
            f"{name}: expected a (B, T + {max_new_tokens}) = {(B, T + max_new_tokens)} tensor "
            f"of token ids, got {got.dtype} {tuple(got.shape)}"
        )
    if not torch.equal(got[:, :T].long(), prompt.long()):
        raise AssertionError(f"{name}: the output must start with the prompt")
    got = got.long()
    if got.min() < 0 or got.max() >= model.config.vocab_size:
        raise AssertionError(f"{name}: token ids outside [0, {model.config.vocab_size})")
    logits = model(got)[:, T - 1 : -1]  # (B, n, V): the prediction for each new token
    chosen = logits.gather(-1, got[:, T:, None])[..., 0]
    short = logits.max(-1).values - chosen
    if (short > LOGITS_ATOL).any():
        b, t = (int(i) for i in (short > LOGITS_ATOL).nonzero()[0])
        raise AssertionError(
            f"{name}: new token {t} of sequence {b} is not the argmax of the logits (it is "
            f"{short[b, t].item():.3g} below the best)"
        )


# --- part 4: samplers ---------------------------------------------------------------------------------------
def probs_variants(logits, temperature: float, top_k=None, top_p=None) -> dict[str, torch.Tensor]:
    """Distributions (…, V) the sampling mistakes produce."""
    out = {}
    if temperature not in (0, 1):
        plain = next_token_probs(logits, 1.0, top_k, top_p)
        out["temperature_after_softmax"] = plain
        out["temperature_after_softmax:unnormalised"] = plain / temperature
    if temperature == 0:
        return out
    scaled = logits / temperature
    if top_k is not None:
        kth = scaled.topk(top_k, dim=-1)
        kept = torch.full_like(scaled, float("-inf")).scatter(-1, kth.indices, kth.values)
        out["top_k_ties"] = next_token_probs(kept, 1.0, None, top_p)
        out["not_renormalised"] = scaled.softmax(-1) * (scaled >= kth.values[..., -1:])
    if top_p is not None:
        base = next_token_probs(logits, temperature, top_k, None)  # the distribution top-p cuts
        sorted_p, order = base.sort(-1, descending=True)
        cum = sorted_p.cumsum(-1)
        for key, drop in (
            ("top_p_boundary", cum > top_p),
            ("top_p_boundary:one_more", cum - sorted_p > top_p),
        ):
            keep = (~drop).scatter(-1, order, ~drop)
            kept = base * keep
            out[key] = kept / kept.sum(-1, keepdim=True)
    return out


def expect_samples(draws, probs, name: str, *, tolerance: float = 0.04) -> None:
    """`draws` (N, 1) token ids drawn from rows that all hold `probs` (V,): every draw has positive
    probability, and each token's frequency lies within `tolerance` of its probability (N = 4000 gives a
    standard error below 0.008)."""
    from course.grading import harness

    draws = harness._tensor(draws, name)
    if draws.dim() != 2 or draws.shape[1] != 1 or draws.dtype not in (torch.long, torch.int32, torch.int64):
        raise AssertionError(f"{name}: expected (B, 1) token ids, got {draws.dtype} {tuple(draws.shape)}")
    ids = draws[:, 0].long()
    if ids.min() < 0 or ids.max() >= probs.shape[-1]:
        raise AssertionError(f"{name}: token ids outside [0, {probs.shape[-1]})")
    impossible = ids[probs[ids] == 0]
    if impossible.numel():
        raise AssertionError(
            f"{name}: drew token {impossible[0].item()}, which has probability 0 under the "
            f"temperature / top-k / top-p filters"
        )
    freq = torch.bincount(ids, minlength=probs.shape[-1]).double() / ids.numel()
    gap = (freq - probs).abs()
    if gap.max() > tolerance:
        t = int(gap.argmax())
        raise AssertionError(
            f"{name}: token {t} was drawn with frequency {freq[t]:.3f}, but its probability is {probs[t]:.3f}"
        )
