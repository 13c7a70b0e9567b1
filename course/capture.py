"""Record activations under TransformerLens-style names (`blocks.0.attn.hook_pattern`, ...).

Names (for a DecoderLM; EncoderLM likewise; an EncoderDecoder prefixes `encoder.` / `decoder.`):
  hook_embed, hook_pos_embed                          (B, T, d_model)
  blocks.{l}.hook_resid_pre / _mid / _post            (B, T, d_model)   residual stream
  blocks.{l}.hook_attn_out, hook_mlp_out              (B, T, d_model)   sub-layer updates
  blocks.{l}.attn.hook_q / hook_k / hook_v            (B, T, heads, d_head)
  blocks.{l}.attn.hook_rot_q / hook_rot_k             after RoPE
  blocks.{l}.attn.hook_attn_scores                    (B, H, T_q, T_k) scaled, masked cells -inf, pre-softmax
  blocks.{l}.attn.hook_pattern                        (B, H, T_q, T_k) softmax (fully masked rows are 0)
  blocks.{l}.attn.hook_z                              (B, T, H, d_head) per-head outputs
Capturing scores or patterns switches that layer to the explicit attention path (the fused kernel keeps none).

Reading: `run_with_cache(model, idx)` (or `with recording(model) as store:`). Editing, as TransformerLens
does: `run_with_hooks(model, idx, fwd_hooks=[(name, fn)])` (or `with hooks(model, fwd_hooks):`), where
`fn(activation, hook)` returns the activation to use instead (None keeps it), e.g. zeroing heads of `hook_z`.
"""

from __future__ import annotations

import contextlib

import torch

from .hook_point import HookPoint

ALIASES = {
    "pattern": "attn.hook_pattern",
    "attn": "attn.hook_pattern",
    "attn_scores": "attn.hook_attn_scores",
    "attn_logits": "attn.hook_attn_scores",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
}


def hook_points(model) -> dict[str, HookPoint]:
    """Every HookPoint under its stable name (the `transformer.` prefix of a decoder-only model is
    dropped)."""
    points = {}
    for name, module in model.named_modules():
        if isinstance(module, HookPoint):
            points[name.removeprefix("transformer.")] = module
    return points


class ActivationCache(dict):
    """A dict name -> tensor that also accepts `cache["pattern", layer]` (negative layers allowed)."""

    def __init__(self, data, n_layers: int):
        super().__init__(data)
        self.n_layers = n_layers

    def __getitem__(self, key):
        if isinstance(key, tuple):
            short, layer = key
            layer = layer % self.n_layers
            key = f"blocks.{layer}.{ALIASES.get(short, short)}"
        return super().__getitem__(key)

    def stack(self, short: str) -> torch.Tensor:
        """(n_layers, ...) activations of one kind, e.g. `stack("pattern")`."""
        return torch.stack([self[short, layer] for layer in range(self.n_layers)])


@contextlib.contextmanager
def hooks(model, fwd_hooks):
    """Add forward hooks `[(name, fn)]` for the duration of the block; `fn(activation, hook)` returns the new
    activation or None (keep it); `hook` is the HookPoint, its `name` set. Removed afterwards, even on
    error."""
    points = hook_points(model)
    unknown = [name for name, _ in fwd_hooks if name not in points]
    if unknown:
        raise ValueError(f"no hook point named {unknown}; expected names like {next(iter(points), '')!r}")
    handles = []
    try:
        for name, fn in fwd_hooks:
            point = points[name]
            point.name = name
            handles.append(point.register_forward_hook(lambda module, args, out, fn=fn: fn(out, module)))
        yield model
    finally:
        for h in handles:
            h.remove()


def run_with_hooks(model, idx, fwd_hooks, **forward_kwargs):
    """`model(idx, **forward_kwargs)` with `fwd_hooks` [(name, fn)] added for this one call."""
    with hooks(model, fwd_hooks):
        return model(idx, **forward_kwargs)


@contextlib.contextmanager
def recording(model, names_filter=None, store: dict | None = None):
    """Record activations (detached) for the duration of the block; yields the dict that fills up."""
    store = {} if store is None else store

    def save(activation, hook):
        store[hook.name] = activation.detach()

    names = [n for n in hook_points(model) if _wanted(n, names_filter)]
    with hooks(model, [(name, save) for name in names]):
        yield store


def _wanted(name: str, names_filter) -> bool:
    return names_filter is None or (names_filter(name) if callable(names_filter) else name in names_filter)


@torch.no_grad()
def run_with_cache(model, idx, names_filter=None, **forward_kwargs):
    """Run `model(idx)` and return (logits, ActivationCache) with every (or every filtered) activation."""
    with recording(model, names_filter) as store:
        logits = model(idx, **forward_kwargs)
    return logits, ActivationCache(store, len(model.blocks))
