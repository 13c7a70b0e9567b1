"""Whole models: decoder-only LM (GPT/Llama style), encoder-only with an MLM head (BERT style),
encoder-decoder.

All three are built from one `TransformerStack`: embeddings (+ positions) -> blocks -> final norm (Pre-LN).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .blocks import Block, dropout
from .config import ModelConfig
from .costs import measured_params
from .hook_point import HookPoint
from .kv_cache import KVCache
from .masks import causal_mask, combine, padding_mask
from .norms import make_norm
from .positional import RelativePositionBias, alibi_bias, positions, rope_angles, sinusoidal_table
from .shapes import Bool, Float, Int, Tensor


class TransformerStack(nn.Module):
    """Token embeddings, positional scheme and a stack of blocks. Returns hidden states (B, T, d_model)."""

    def __init__(
        self,
        config: ModelConfig,
        n_layers: int,
        causal: bool,
        cross_attention: bool = False,
        tok_emb: nn.Embedding | None = None,
    ):
        super().__init__()
        c = self.config = config
        self.causal = causal
        self.tok_emb = tok_emb if tok_emb is not None else nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = nn.Embedding(c.context_length, c.d_model) if c.positional == "learned" else None
        self.rel_bias = (
            RelativePositionBias(
                c.n_heads, c.relative_buckets, c.relative_max_distance, bidirectional=not causal
            )
            if c.positional == "relative"
            else None
        )
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c, cross_attention) for _ in range(n_layers))
        self.ln_f = make_norm(c) if c.norm_placement == "pre" else None
        self.hook_embed, self.hook_pos_embed = HookPoint(), HookPoint()

    def _check_input(self, idx: torch.Tensor, offset: int) -> None:
        if idx.dim() != 2 or idx.dtype not in (torch.long, torch.int, torch.int32, torch.int64):
            raise ValueError(
                f"token ids must be an integer tensor (B, T), got {idx.dtype} {tuple(idx.shape)}"
            )
        if offset + idx.shape[1] > self.config.context_length:
            raise ValueError(
                f"sequence length {offset + idx.shape[1]} exceeds context_length={self.config.context_length}"
            )

    def embed(self, idx: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings plus absolute positions (learned / sinusoidal) at pos (T,) or (B, T), default
        0..T-1."""
        c = self.config
        pos = positions(idx.shape[1], 0, idx.device) if pos is None else pos
        x = self.hook_embed(self.tok_emb(idx))  # (B, T, d_model)
        if self.pos_emb is not None:
            x = x + self.hook_pos_embed(self.pos_emb(pos))
        elif c.positional == "sinusoidal":
            x = x + self.hook_pos_embed(sinusoidal_table(pos, c.d_model).to(x))
        return dropout(self.drop, x)

    def rope(self, pos: torch.Tensor):
        """RoPE's (cos, sin) at token positions pos (T,) or (B, T); None for other schemes."""
        c = self.config
        return rope_angles(pos, c.d_head, c.rope_theta) if c.positional == "rope" else None

    def distance_bias(self, q_pos: int | torch.Tensor, k_pos: int | torch.Tensor) -> torch.Tensor | None:
        """ALiBi / T5 bias (.., H, T, T_k) for queries at q_pos reading keys at k_pos; None for other
        schemes."""
        c = self.config
        if c.positional == "alibi":
            return alibi_bias(c.n_heads, q_pos, k_pos, self.tok_emb.weight.device)
        if c.positional == "relative":
            return self.rel_bias(q_pos, k_pos)
        return None

    def self_attention_mask(self, T: int, T_k: int, cache_mask, is_token, device):
        """(mask, is_causal) for every block: the cache's mask, causality, and `is_token` (B, T_k) padding."""
        mask = cache_mask
        if is_token is not None:
            if self.causal and mask is None:
                mask = causal_mask(T, T_k, device)
            mask = combine(mask, padding_mask(is_token))
        return mask, self.causal and mask is None

    def forward(
        self,
        idx: Int[Tensor, "B T"],
        *,
        pos: Int[Tensor, "*#B T"] | None = None,
        cache=None,
        is_token: Bool[Tensor, "B T_k"] | None = None,
        context: Float[Tensor, "B S d_model"] | None = None,
        context_mask: Bool[Tensor, "*#b #T S"] | None = None,
    ) -> Float[Tensor, "B T d_model"]:
        """idx (B, T) at token positions pos ((T,) or (B, T); default: those after the cache's) -> hidden
        (B, T, d_model). `cache`: a KV cache (`course.kv_cache`); `is_token` (B, T_k) bool marks real keys."""
        T = idx.shape[1]
        slots = None if cache is None else cache.slots(T, pos)  # (T,) where this call's keys/values go
        self._check_input(idx, cache.length if pos is None and cache is not None else 0)
        if pos is None:
            pos = positions(T, 0, idx.device) if slots is None else slots
        T_k = T if cache is None else cache.n_keys(T)
        x = self.embed(idx, pos)
        rope = self.rope(pos)
        # Distances within a sequence are the same in slots as in positions (left padding shifts both ends).
        bias = self.distance_bias(pos, pos) if cache is None else self.distance_bias(slots, T_k)
        mask, is_causal = self.self_attention_mask(
            T, T_k, None if cache is None else cache.mask(slots), is_token, idx.device
        )
        for i, block in enumerate(self.blocks):
            x = block(
                x,
                mask=mask,
                rope=rope,
                bias=bias,
                cache=None if cache is None else cache.layer(i),
                cache_pos=slots,
                is_causal=is_causal,
                context=context,
                context_mask=context_mask,
            )
        if cache is not None:
            cache.advance(T)
        return x if self.ln_f is None else self.ln_f(x)


def init_weights(model: nn.Module, n_layers: int) -> None:
    """GPT-2 initialisation: N(0, 0.02), zero biases, residual projections scaled by 1/sqrt(2·n_layers)."""
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * n_layers) if name.endswith(("o_proj.weight", "down.weight")) else 0.02
            nn.init.normal_(p, 0.0, std)
        elif name.endswith("bias") and "rel_bias" not in name:
            nn.init.zeros_(p)


def attach_lm_head(model: nn.Module, tok_emb: nn.Embedding) -> None:
    """Give `model` its output projection `lm_head`, initialise all its weights, and tie the head to the token
    embedding when `config.tie_weights` (weight tying: one (vocab, d_model) matrix read in and out)."""
    c = model.config
    model.lm_head = nn.Linear(c.d_model, c.vocab_size, bias=False)
    init_weights(model, c.n_layers)
    if c.tie_weights:
        model.lm_head.weight = tok_emb.weight


class CountedModule(nn.Module):
    def num_params(self) -> int:
        """Parameters allocated, a tied weight once (`course.costs.measured_params`); for a DecoderLM this
        equals `course.costs.param_count(config)["total"]` (the tests pin it)."""
        return measured_params(self)


class DecoderLM(CountedModule):
    """Decoder-only language model (GPT-2 / Llama style): causal self-attention, next-token logits."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.transformer = TransformerStack(config, config.n_layers, causal=True)
        attach_lm_head(self, self.transformer.tok_emb)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.blocks

    def forward(
        self,
        idx: Int[Tensor, "B T"],
        *,
        pos: Int[Tensor, "*#B T"] | None = None,
        cache=None,
        is_token: Bool[Tensor, "B T_k"] | None = None,
        last_only: bool = False,
    ) -> Float[Tensor, "B T_out vocab"]:
        """idx (B, T) token ids at positions pos ((T,) or (B, T), default 0.. or after the cache's) -> logits
        (B, T, vocab_size); (B, 1, vocab_size) with `last_only`, which spares the LM head (the largest matmul)
        at the positions a decoder does not sample from. `cache`: a KV cache (`course.kv_cache`)."""
        h = self.transformer(idx, pos=pos, cache=cache, is_token=is_token)
        return self.lm_head(h[:, -1:] if last_only else h)

    def generate(
        self,
        idx,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        use_cache: bool = True,
        seed: int | None = None,
    ):
        """Prompt (B, T) -> prompt followed by new tokens (B, T + max_new_tokens). temperature=0: greedy."""
        from .generation import generate

        return generate(self, idx, max_new_tokens, temperature, top_k, top_p, use_cache, seed)


class EncoderLM(CountedModule):
    """Encoder-only model (BERT style): bidirectional self-attention and a masked-LM head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.transformer = TransformerStack(config, config.n_layers, causal=False)
        self.mlm_transform = nn.Sequential(
            nn.Linear(config.d_model, config.d_model), nn.GELU(), make_norm(config)
        )
        attach_lm_head(self, self.transformer.tok_emb)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.transformer.blocks

    def encode(self, idx, is_token=None) -> torch.Tensor:
        """Contextual representations (B, T, d_model)."""
        return self.transformer(idx, is_token=is_token)

    def forward(self, idx, is_token=None) -> torch.Tensor:
        """idx (B, T) -> MLM logits (B, T, vocab_size) at every position."""
        return self.lm_head(self.mlm_transform(self.encode(idx, is_token)))


class EncoderDecoder(CountedModule):
    """Encoder-decoder (the original Transformer): encoder self-attention, decoder causal +
    cross-attention."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.encoder = TransformerStack(config, config.n_encoder_layers, causal=False)
        self.decoder = TransformerStack(
            config, config.n_layers, causal=True, cross_attention=True, tok_emb=self.encoder.tok_emb
        )
        attach_lm_head(self, self.encoder.tok_emb)

    @property
    def blocks(self) -> nn.ModuleList:
        return self.decoder.blocks

    def encode(self, src, src_is_token=None) -> torch.Tensor:
        return self.encoder(src, is_token=src_is_token)

    def decode(self, tgt, memory, src_is_token=None, tgt_is_token=None, cache=None) -> torch.Tensor:
        context_mask = None if src_is_token is None else padding_mask(src_is_token)
        h = self.decoder(tgt, cache=cache, is_token=tgt_is_token, context=memory, context_mask=context_mask)
        return self.lm_head(h)

    def forward(self, src, tgt, src_is_token=None, tgt_is_token=None) -> torch.Tensor:
        """src (B, S), tgt (B, T) -> logits (B, T, vocab_size) for the next target token."""
        return self.decode(tgt, self.encode(src, src_is_token), src_is_token, tgt_is_token)

    @torch.no_grad()
    def generate(self, src, bos_id: int, max_new_tokens: int, src_is_token=None, use_cache: bool = True):
        """Greedy decoding: (B, 1 + max_new_tokens) target ids starting with `bos_id`."""
        from .generation import decode, greedy, uncached_step

        memory = self.encode(src, src_is_token)
        B, c = src.shape[0], self.config
        bos = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)

        def run(tgt, cache=None):
            return self.decode(tgt, memory, src_is_token, cache=cache)[:, -1]

        if not use_cache:
            return decode(uncached_step(run), bos, max_new_tokens, greedy)
        kv = KVCache(c.n_layers, B, c.n_kv_heads, 1 + max_new_tokens, c.d_head, memory.dtype, memory.device)
        return decode(lambda new, start: run(new, kv), bos, max_new_tokens, greedy)
