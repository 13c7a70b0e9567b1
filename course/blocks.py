"""Transformer blocks. Pre-LN: x + F(LN(x)) (the residual stream itself is never normalized).
Post-LN: LN(x + F(x)) (the original Transformer; the stream is re-normalized after every sub-layer)."""

import torch.nn as nn

from .attention import MultiHeadAttention
from .config import ModelConfig
from .feedforward import make_mlp
from .hooks import HookPoint
from .norms import make_norm


class Block(nn.Module):
    """Self-attention + MLP, optionally with cross-attention in between (an encoder-decoder's decoder
    block)."""

    def __init__(self, config: ModelConfig, cross_attention: bool = False):
        super().__init__()
        self.pre_norm = config.norm_placement == "pre"
        self.ln1, self.attn = make_norm(config), MultiHeadAttention(config)
        self.ln_cross = make_norm(config) if cross_attention else None
        self.cross_attn = MultiHeadAttention(config, cross=True) if cross_attention else None
        self.ln2, self.mlp = make_norm(config), make_mlp(config)
        self.drop = nn.Dropout(config.dropout)
        for name in (
            "hook_resid_pre",
            "hook_attn_out",
            "hook_resid_mid",
            "hook_cross_out",
            "hook_mlp_out",
            "hook_resid_post",
        ):
            setattr(self, name, HookPoint())

    def _sublayer(self, x, norm, fn, hook):
        if self.pre_norm:
            return x + self.drop(hook(fn(norm(x))))
        return norm(x + self.drop(hook(fn(x))))

    def forward(
        self, x, mask=None, rope=None, bias=None, cache=None, is_causal=False, context=None, context_mask=None
    ):
        """x (B, T, d_model) -> (B, T, d_model). `context` is the encoder output for cross-attention."""
        x = self.hook_resid_pre(x)
        x = self._sublayer(
            x,
            self.ln1,
            lambda h: self.attn(h, mask, rope, bias, cache, is_causal=is_causal),
            self.hook_attn_out,
        )
        x = self.hook_resid_mid(x)
        if self.cross_attn is not None:
            x = self._sublayer(
                x,
                self.ln_cross,
                lambda h: self.cross_attn(h, context_mask, context=context),
                self.hook_cross_out,
            )
        x = self._sublayer(x, self.ln2, self.mlp, self.hook_mlp_out)
        return self.hook_resid_post(x)
