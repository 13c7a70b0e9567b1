"""KV caches. Layout per layer: keys and values of shape (B, n_kv_heads, max_len, d_head), preallocated.

One interface, two caches (`course.static_decode.StaticKVCache` is the other):
  cache.slots(T, pos)           -> (T,) the slots the next T tokens' keys/values are written to
  cache.layer(i).update(pos, k, v) -> (k, v): write k, v (B, H_kv, T, d_head) at slots pos (T,), return
                                   the keys and values attention reads, (B, H_kv, T_k, d_head)
  cache.n_keys(T), cache.mask(pos) -> T_k, and the (T, T_k) bool mask over them (None: causal, bottom-right)
  cache.advance(T)               after every layer has been updated
`KVCache` (this module) appends: prefill writes the whole prompt's K/V at once, each decode step one more
position, and attention reads the filled prefix only (shapes grow with every step).
"""

from __future__ import annotations

import torch

from .positional import positions
from .shapes import Float, Int, Tensor


class LayerKVCache:
    def __init__(self, parent: KVCache, layer: int):
        self.parent, self.layer = parent, layer

    def update(
        self, pos: Int[Tensor, " T"], k: Float[Tensor, "B H_kv T d_head"], v: Float[Tensor, "B H_kv T d_head"]
    ) -> tuple[Float[Tensor, "B H_kv T_k d_head"], Float[Tensor, "B H_kv T_k d_head"]]:
        """Write k, v (B, H_kv, T_new, d_head) at slots pos (T_new,), which follow the stored positions;
        return all keys/values so far, (B, H_kv, length + T_new, d_head)."""
        end = self.parent.n_keys(k.shape[-2])
        keys, values = self.parent.keys[self.layer], self.parent.values[self.layer]
        keys.index_copy_(2, pos, k)
        values.index_copy_(2, pos, v)
        return keys[:, :, :end], values[:, :, :end]


class KVCache:
    """Keys and values of every layer, preallocated to `max_len` positions; `length` of them are stored."""

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

    def slots(self, T: int, pos: torch.Tensor | None = None) -> torch.Tensor:
        """(T,) slots length..length+T-1, whatever the token positions `pos` (a left-padded batch's
        differ)."""
        if self.length + T > self.max_len:
            raise ValueError(
                f"KV cache overflow: {self.length} stored + {T} new positions > max_len={self.max_len}"
            )
        return positions(T, self.length, self.keys[0].device)

    def n_keys(self, T: int) -> int:
        return self.length + T

    def mask(self, pos: torch.Tensor) -> None:
        """None: the stored prefix plus the new positions is causal, bottom-right aligned (attention's
        default)."""
        return None

    def layer(self, i: int) -> LayerKVCache:
        return LayerKVCache(self, i)

    def advance(self, T_new: int) -> None:
        self.length += T_new

    def reset(self) -> None:
        self.length = 0

    def nbytes(self) -> int:
        """Bytes actually allocated for keys and values (all layers, full max_len)."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)
