"""Decoding: one loop (`decode`) with a pluggable sampler — greedy, temperature, top-k, top-p (nucleus) —
and a pluggable model step (KV cache, static cache, encoder-decoder, or recomputing everything).

A step is `step(new (B, T_new), start) -> logits (B, V)`: run the model on the new tokens, which sit at
positions start..start+T_new-1, and return the last one's next-token logits. A sampler maps (B, V) logits
to (B, 1) ids.
"""

from __future__ import annotations

import torch

from .kv_cache import KVCache
from .shapes import Float, Int, Tensor


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


def sample_next(
    logits: Float[Tensor, "B V"], temperature=1.0, top_k=None, top_p=None, generator=None
) -> Int[Tensor, "B 1"]:
    """(B, V) logits -> (B, 1) next token ids."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0")
    if temperature == 0:
        return logits.argmax(-1, keepdim=True)
    probs = next_token_probs(logits.float(), temperature, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator)


def greedy(logits: Float[Tensor, "B V"]) -> Int[Tensor, "B 1"]:
    """(B, V) logits -> (B, 1) argmax ids."""
    return logits.argmax(-1, keepdim=True)


def sampler(temperature=1.0, top_k=None, top_p=None, seed: int | None = None, device=None):
    """A sampler: (B, V) logits -> (B, 1) ids, drawn with its own generator when `seed` is given."""
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0")
    if temperature == 0:
        return greedy
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    return lambda logits: sample_next(logits, temperature, top_k, top_p, generator)


def uncached_step(run):
    """A step that recomputes the whole sequence: `run(tokens (B, T)) -> (B, V)` sees every token so far."""
    seen = []

    def step(new, start):
        seen.append(new)
        return run(torch.cat(seen, 1))

    return step


@torch.no_grad()
def decode(step, prompt: Int[Tensor, "B T"], max_new_tokens: int, sample=greedy) -> Int[Tensor, "B T_out"]:
    """The decode loop: prompt (B, T) -> (B, T + max_new_tokens). The first step is the prefill (the whole
    prompt at start 0), each later one feeds back the token just sampled."""
    tokens, new, start = [prompt], prompt, 0
    for _ in range(max_new_tokens):
        logits = step(new, start)  # (B, V)
        start += new.shape[1]
        new = sample(logits)  # (B, 1)
        tokens.append(new)
    return torch.cat(tokens, 1)


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
    sample = sampler(temperature, top_k, top_p, seed, idx.device)
    if not use_cache:
        return decode(
            uncached_step(lambda tokens: model(tokens, last_only=True)[:, -1]), idx, max_new_tokens, sample
        )
    cache = KVCache.for_model(model, B, max_len=total)
    return decode(
        lambda new, start: model(new, cache=cache, last_only=True)[:, -1], idx, max_new_tokens, sample
    )
