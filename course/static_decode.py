"""Fast decoding on a GPU: a static KV cache and a fixed-shape decode step that a CUDA graph can replay.

The eager `KVCache` returns keys sliced to the stored length, so every decode step has new shapes and costs
one kernel launch per op from Python. Here nothing changes shape between steps:
  * the cache keeps all `max_len` slots; new keys/values are written at the token positions, held in a device
    tensor (`index_copy_`), and attention reads every slot, the slots after the query masked out (True = may
    attend);
  * the step is the model's own forward at those positions (`model(token, pos=pos, cache=cache)`) —
    nothing of the model is re-implemented.
So the step can be captured once in a CUDA graph (`mode="graph"`) or compiled with
`torch.compile(mode="reduce-overhead")` (`mode="compile"`) and replayed for each token.
"""

from __future__ import annotations

import torch

from .generation import decode, sampler
from .shapes import Float, Int, Tensor

MODES = ("eager", "graph", "compile")


class StaticLayerCache:
    """One layer's slice of a `StaticKVCache`."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        self.keys, self.values = keys, values

    def update(
        self, pos: Int[Tensor, " T"], k: Float[Tensor, "B H_kv T d_head"], v: Float[Tensor, "B H_kv T d_head"]
    ) -> tuple[Float[Tensor, "B H_kv max_len d_head"], Float[Tensor, "B H_kv max_len d_head"]]:
        """k, v (B, H_kv, T_new, d_head) written at slots pos (T_new,); returns (B, H_kv, max_len, d_head)."""
        self.keys.index_copy_(2, pos, k)
        self.values.index_copy_(2, pos, v)
        return self.keys, self.values


class StaticKVCache:
    """Keys and values of every layer, (B, n_kv_heads, max_len, d_head), at fixed addresses. The slots are the
    token positions (shared by the batch); the interface is `course.kv_cache`'s."""

    def __init__(self, config, batch_size: int, max_len: int, dtype, device):
        shape = (batch_size, config.n_kv_heads, max_len, config.d_head)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(config.n_layers)]
        self.max_len = max_len
        self.key_slots = torch.arange(max_len, device=device)  # (max_len,)

    def slots(self, T: int, pos: torch.Tensor | None) -> torch.Tensor:
        if pos is None or pos.shape != (T,):
            got = None if pos is None else tuple(pos.shape)
            raise ValueError(
                f"the static cache writes at the token positions: pass pos of shape ({T},), got {got}"
            )
        return pos

    def n_keys(self, T: int) -> int:
        return self.max_len

    def mask(self, pos: torch.Tensor) -> torch.Tensor:
        """(T, max_len): a query at position p sees the slots up to p."""
        return self.key_slots[None, :] <= pos[:, None]

    def layer(self, i: int) -> StaticLayerCache:
        return StaticLayerCache(self.keys[i], self.values[i])

    def advance(self, T: int) -> None:
        """Nothing to count: the positions say where everything is."""

    def tensors(self) -> list[torch.Tensor]:
        return self.keys + self.values

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())


class StaticDecoder:
    """Decode a `DecoderLM` with a static cache. `mode`: "eager", "graph" (CUDA graph) or "compile".

    `generate(idx, max_new_tokens, temperature=0, ...)` returns what `model.generate` returns.
    """

    def __init__(self, model, batch_size: int = 1, max_len: int | None = None, mode: str = "eager"):
        if mode not in MODES:
            raise ValueError(f"mode={mode!r} is not one of {list(MODES)}")
        c, w = model.config, next(model.parameters())
        if mode == "graph" and w.device.type != "cuda":
            raise ValueError(f"mode='graph' needs the model on a CUDA device, got {w.device}")
        self.model, self.mode, self.batch_size = model, mode, batch_size
        self.max_len = c.context_length if max_len is None else max_len
        if not 1 <= self.max_len <= c.context_length:
            raise ValueError(f"max_len={self.max_len} must lie in [1, context_length={c.context_length}]")
        device = w.device
        self.cache = StaticKVCache(c, batch_size, self.max_len, w.dtype, device)
        self.token = torch.zeros(batch_size, 1, dtype=torch.long, device=device)  # decode-step input
        self.pos = torch.zeros(1, dtype=torch.long, device=device)  # its position
        self._step_fn, self._graph, self._logits = None, None, None

    @torch.no_grad()
    def forward_at(self, idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """idx (B, T) at positions pos (T,) -> logits of the last position (B, vocab). Writes the cache."""
        return self.model(idx, pos=pos, cache=self.cache, last_only=True)[:, -1]

    def _step(self) -> torch.Tensor:
        return self.forward_at(self.token, self.pos)

    # --- decode-step backends ------------------------------------------------------------------------------
    def _build_step(self):
        if self.mode == "eager":
            return self._step
        if self.mode == "compile":
            for t in self.cache.tensors() + [self.token, self.pos]:
                torch._dynamo.mark_static_address(t)
            fn = torch.compile(
                self._step, mode="reduce-overhead" if self.pos.is_cuda else None, fullgraph=True
            )

            def compiled():
                torch.compiler.cudagraph_mark_step_begin()
                return fn()

            return compiled
        return self._capture_graph()

    def _capture_graph(self):
        """Warm up on a side stream, capture one step, replay it. Warm-up writes only slot `pos`, which the
        real step at that position overwrites before anything reads it."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._step()
        torch.cuda.current_stream().wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._logits = self._step()

        def replay():
            self._graph.replay()
            return self._logits

        return replay

    def step(self, token: torch.Tensor, position: int) -> torch.Tensor:
        """One decode step: token (B, 1) at `position` -> logits (B, vocab). Valid until the next step."""
        if not 0 <= position < self.max_len:
            raise ValueError(f"position={position} is outside the static cache's [0, max_len={self.max_len})")
        self.token.copy_(token)
        self.pos.fill_(position)
        if self._step_fn is None:
            self._step_fn = self._build_step()
        return self._step_fn()

    @torch.no_grad()
    def generate(
        self,
        idx,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k=None,
        top_p=None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Prompt (B, T) -> (B, T + max_new_tokens), as `DecoderLM.generate`; prefill eager, decode steps
        static."""
        B, T = idx.shape
        if B != self.batch_size:
            raise ValueError(
                f"batch of {B} prompts, but the static cache was built for batch_size={self.batch_size}"
            )
        if max_new_tokens < 0 or T + max_new_tokens > self.max_len:
            raise ValueError(f"prompt {T} + max_new_tokens {max_new_tokens} must fit max_len={self.max_len}")

        def step(new, start):
            if start == 0:  # prefill (eager, variable length)
                return self.forward_at(new, torch.arange(new.shape[1], device=new.device))
            return self.step(new, start)

        return decode(step, idx, max_new_tokens, sampler(temperature, top_k, top_p, seed, idx.device))
