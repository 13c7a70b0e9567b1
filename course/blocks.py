"""Transformer blocks. Pre-LN: x + F(LN(x)) (the residual stream itself is never normalized).
Post-LN: LN(x + F(x)) (the original Transformer; the stream is re-normalized after every sub-layer)."""

import torch.nn as nn

from .attention import MultiHeadAttention
from .config import ModelConfig
from .feedforward import make_mlp
from .hook_point import HookPoint
from .norms import make_norm
from .shapes import Bool, Float, Int, Tensor


def dropout(drop: nn.Dropout, x):
    """`drop(x)`, skipped (no module call) where it is the identity: eval mode or p = 0 (decode steps)."""
    return drop(x) if drop.training and drop.p > 0 else x


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
            return x + dropout(self.drop, hook(fn(norm(x))))
        return norm(x + dropout(self.drop, hook(fn(x))))

    def forward(
        self,
        x: Float[Tensor, "B T d_model"],
        *,
        mask: Bool[Tensor, "*#b #T T_k"] | None = None,
        rope: tuple[Float[Tensor, "*#b T half"], Float[Tensor, "*#b T half"]] | None = None,
        bias: Float[Tensor, "*#b #H #T T_k"] | None = None,
        cache=None,
        cache_pos: Int[Tensor, " T"] | None = None,
        is_causal: bool = False,
        context: Float[Tensor, "B S d_model"] | None = None,
        context_mask: Bool[Tensor, "*#b #T S"] | None = None,
    ) -> Float[Tensor, "B T d_model"]:
        """x (B, T, d_model) -> (B, T, d_model). The options are self-attention's (`MultiHeadAttention`);
        `context` (B, S, d_model) is the encoder output for cross-attention, `context_mask` its padding."""
        x = self.hook_resid_pre(x)

        def self_attention(h):
            return self.attn(
                h, mask=mask, rope=rope, bias=bias, cache=cache, cache_pos=cache_pos, is_causal=is_causal
            )

        x = self.hook_resid_mid(self._sublayer(x, self.ln1, self_attention, self.hook_attn_out))
        if self.cross_attn is not None:

            def cross_attention(h):
                return self.cross_attn(h, mask=context_mask, context=context)

            x = self._sublayer(x, self.ln_cross, cross_attention, self.hook_cross_out)
        x = self._sublayer(x, self.ln2, self.mlp, self.hook_mlp_out)
        return self.hook_resid_post(x)
