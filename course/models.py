"""Whole models: decoder-only LM (GPT/Llama style), encoder-only with an MLM head (BERT style),
encoder-decoder.

All three are built from one `TransformerStack`: embeddings (+ positions) -> blocks -> final norm (Pre-LN).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .blocks import Block
from .config import ModelConfig
from .costs import measured_params
from .hooks import HookPoint
from .kv_cache import KVCache
from .masks import causal_mask, combine, padding_mask
from .norms import make_norm
from .positional import RelativePositionBias, alibi_bias, positions, rope_angles, sinusoidal_table


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

    def embed(self, idx: torch.Tensor, offset: int = 0) -> torch.Tensor:
        T, c = idx.shape[1], self.config
        x = self.hook_embed(self.tok_emb(idx))
        if self.pos_emb is not None:
            x = x + self.hook_pos_embed(self.pos_emb(positions(T, offset, idx.device)))
        elif c.positional == "sinusoidal":
            x = x + self.hook_pos_embed(sinusoidal_table(T, c.d_model, offset).to(x))
        return self.drop(x)

    def position_inputs(self, T: int, T_k: int, device):
        """(rope, bias) for queries that are the last T of T_k positions."""
        c = self.config
        rope = rope_angles(T, c.d_head, c.rope_theta, T_k - T, device) if c.positional == "rope" else None
        bias = None
        if c.positional == "alibi":
            bias = alibi_bias(c.n_heads, T, T_k, device)[None]
        elif c.positional == "relative":
            bias = self.rel_bias(T, T_k)[None]
        return rope, bias

    def forward(self, idx, is_token=None, cache: KVCache | None = None, context=None, context_mask=None):
        """idx (B, T) -> hidden (B, T, d_model). `is_token` (B, T_k) bool marks real (non-padding) keys."""
        offset = cache.length if cache is not None else 0
        self._check_input(idx, offset)
        T = idx.shape[1]
        T_k = offset + T
        x = self.embed(idx, offset)
        rope, bias = self.position_inputs(T, T_k, idx.device)
        mask = None if is_token is None else padding_mask(is_token)
        if self.causal and mask is not None:
            mask = combine(causal_mask(T, T_k, idx.device), mask)
        is_causal = self.causal and mask is None
        for i, block in enumerate(self.blocks):
            layer_cache = cache.layer(i) if cache is not None else None
            x = block(x, mask, rope, bias, layer_cache, is_causal, context, context_mask)
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


class DecoderLM(nn.Module):
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
        self, idx, cache: KVCache | None = None, is_token=None, last_only: bool = False
    ) -> torch.Tensor:
        """idx (B, T) token ids -> logits (B, T, vocab_size); (B, 1, vocab_size) with `last_only`, which
        spares the LM head (the largest matmul) at the positions a decoder does not sample from."""
        h = self.transformer(idx, is_token, cache)
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

    def num_params(self) -> int:
        """Parameters allocated, a tied weight once: `course.costs.measured_params`, which equals
        `course.costs.param_count(config)["total"]` (the tests pin it)."""
        return measured_params(self)


class EncoderLM(nn.Module):
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
        return self.transformer(idx, is_token)

    def forward(self, idx, is_token=None) -> torch.Tensor:
        """idx (B, T) -> MLM logits (B, T, vocab_size) at every position."""
        return self.lm_head(self.mlm_transform(self.encode(idx, is_token)))


class EncoderDecoder(nn.Module):
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
        return self.encoder(src, src_is_token)

    def decode(self, tgt, memory, src_is_token=None, tgt_is_token=None, cache=None) -> torch.Tensor:
        context_mask = None if src_is_token is None else padding_mask(src_is_token)
        return self.lm_head(self.decoder(tgt, tgt_is_token, cache, memory, context_mask))

    def forward(self, src, tgt, src_is_token=None, tgt_is_token=None) -> torch.Tensor:
        """src (B, S), tgt (B, T) -> logits (B, T, vocab_size) for the next target token."""
        return self.decode(tgt, self.encode(src, src_is_token), src_is_token, tgt_is_token)

    @torch.no_grad()
    def generate(self, src, bos_id: int, max_new_tokens: int, src_is_token=None, use_cache: bool = True):
        """Greedy decoding: (B, 1 + max_new_tokens) target ids starting with `bos_id`."""
        memory = self.encode(src, src_is_token)
        B = src.shape[0]
        tgt = torch.full((B, 1), bos_id, dtype=torch.long, device=src.device)
        c = self.config
        cache = (
            KVCache(c.n_layers, B, c.n_kv_heads, 1 + max_new_tokens, c.d_head, memory.dtype, memory.device)
            if use_cache
            else None
        )
        step_input = tgt
        for _ in range(max_new_tokens):
            logits = self.decode(step_input if use_cache else tgt, memory, src_is_token, cache=cache)
            nxt = logits[:, -1].argmax(-1, keepdim=True)
            tgt = torch.cat((tgt, nxt), 1)
            step_input = nxt
        return tgt
