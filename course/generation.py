"""Decoding: greedy, temperature, top-k and top-p (nucleus) sampling, with or without the KV cache."""

from __future__ import annotations

import torch

from .kv_cache import KVCache


def filter_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """(..., V) logits / temperature, with tokens outside top-k / the top-p nucleus set to -inf."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature} must be > 0 here (temperature=0 means greedy)")
    logits = logits / temperature
    if top_k is not None:
        if not 1 <= top_k:
            raise ValueError(f"top_k={top_k} must be a positive integer")
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p={top_p} must lie in (0, 1]")
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # Drop a token when the tokens ranked above it already reach top_p (the first one is always kept).
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token_probs(logits, temperature: float = 1.0, top_k=None, top_p=None) -> torch.Tensor:
    """The distribution a sampler draws from. temperature=0 puts all mass on the argmax."""
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).to(logits.dtype)
    return filter_logits(logits, temperature, top_k, top_p).softmax(-1)


def sample_next(logits, temperature=1.0, top_k=None, top_p=None, generator=None) -> torch.Tensor:
    """(B, V) logits -> (B, 1) next token ids."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0")
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    probs = next_token_probs(logits.float(), temperature, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator)


@torch.no_grad()
def generate(
    model,
    idx,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k=None,
    top_p=None,
    use_cache: bool = True,
    seed: int | None = None,
) -> torch.Tensor:
    """Autoregressive decoding: prefill the prompt once, then one token per step (B, T + max_new_tokens)."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
    B, T = idx.shape
    total = T + max_new_tokens
    if total > model.config.context_length:
        raise ValueError(
            f"prompt {T} + max_new_tokens {max_new_tokens} exceeds "
            f"context_length={model.config.context_length}"
        )
    generator = None
    if seed is not None:
        generator = torch.Generator(device=idx.device).manual_seed(seed)
    cache = KVCache.for_model(model, B, max_len=total) if use_cache else None
    tokens = [idx]
    step_input = idx
    for _step in range(max_new_tokens):
        logits = model(step_input if use_cache else torch.cat(tokens, 1), cache=cache, last_only=True)[:, -1]
        nxt = sample_next(logits, temperature, top_k, top_p, generator)
        tokens.append(nxt)
        step_input = nxt
    return torch.cat(tokens, 1)
