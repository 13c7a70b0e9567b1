"""A preallocated KV cache. Layout per layer: keys and values of shape (B, n_kv_heads, T_max, d_head).

Prefill writes the whole prompt's K/V at once; each decode step appends one position. `length` counts the
positions already stored; the model offsets new positions by it.
"""

from __future__ import annotations

import torch


class LayerKVCache:
    def __init__(self, parent: KVCache, layer: int):
        self.parent, self.layer = parent, layer

    def update(self, k: torch.Tensor, v: torch.Tensor):
        """Write k, v (B, H_kv, T_new, d_head) after the stored positions; return all keys/values so far."""
        start, T_new = self.parent.length, k.shape[-2]
        if start + T_new > self.parent.max_len:
            raise ValueError(
                f"KV cache overflow: {start} stored + {T_new} new positions > max_len={self.parent.max_len}"
            )
        keys, values = self.parent.keys[self.layer], self.parent.values[self.layer]
        keys[:, :, start : start + T_new] = k
        values[:, :, start : start + T_new] = v
        return keys[:, :, : start + T_new], values[:, :, : start + T_new]


class KVCache:
    """Keys and values of every layer, preallocated to `max_len` positions."""

    def __init__(self, n_layers, batch_size, n_kv_heads, max_len, d_head, dtype=torch.float32, device=None):
        shape = (batch_size, n_kv_heads, max_len, d_head)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]
        self.max_len, self.length = max_len, 0

    @classmethod
    def for_model(cls, model, batch_size: int = 1, max_len: int | None = None, dtype=None) -> KVCache:
        """A cache shaped for `model`; dtype and device follow its weights unless `dtype` is given."""
        c, w = model.config, next(model.parameters())
        max_len = c.context_length if max_len is None else max_len
        return cls(c.n_layers, batch_size, c.n_kv_heads, max_len, c.d_head, dtype or w.dtype, w.device)

    def layer(self, i: int) -> LayerKVCache:
        return LayerKVCache(self, i)

    def advance(self, T_new: int) -> None:
        self.length += T_new

    def reset(self) -> None:
        self.length = 0

    def nbytes(self) -> int:
        """Bytes actually allocated for keys and values (all layers, full max_len)."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)
