"""LayerNorm and RMSNorm written out. Both normalize each token over its features (the last axis).

`layer_norm` and `rms_norm` are the reference: the formulas, op by op. The `LayerNorm` and `RMSNorm` modules
the models use run PyTorch's fused kernels for speed; tests/test_masks_positional_norms.py pins both to the
formulas."""

import torch
import torch.nn as nn
import torch.nn.functional as F


def layer_norm(x, weight=None, bias=None, eps: float = 1e-5):
    """(x - mean) / sqrt(var + eps) * weight + bias, with the biased variance (divide by D)."""
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).pow(2).mean(-1, keepdim=True)
    y = (x - mean) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight
    return y if bias is None else y + bias


def rms_norm(x, weight=None, eps: float = 1e-6):
    """x / sqrt(mean(x^2) + eps) * weight: no mean subtraction, no bias."""
    y = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y if weight is None else y * weight


_HAS_F_RMS_NORM = hasattr(F, "rms_norm")  # torch >= 2.4


class LayerNorm(nn.Module):
    """`layer_norm` above as a module, computed in fp32. The forward pass runs PyTorch's fused kernel
    (`F.layer_norm`: one kernel instead of about ten, forward and backward), which the tests pin equal to the
    written-out `layer_norm` (`fused=False` runs that one)."""

    def __init__(self, d_model: int, eps: float = 1e-5, bias: bool = True, fused: bool = True):
        super().__init__()
        self.eps, self.fused = eps, fused
        self.weight = nn.Parameter(torch.ones(d_model))
        self.bias = nn.Parameter(torch.zeros(d_model)) if bias else None

    def forward(self, x):
        bias = None if self.bias is None else self.bias.float()
        if self.fused:
            return F.layer_norm(x.float(), self.weight.shape, self.weight.float(), bias, self.eps).to(x.dtype)
        return layer_norm(x.float(), self.weight.float(), bias, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """`rms_norm` above as a module: normalize in fp32, scale in the input dtype (as Hugging Face Llama does).
    The normalization runs PyTorch's `F.rms_norm` where torch has it (>= 2.4), pinned equal to `rms_norm`
    by the tests; `fused=False` runs the written-out one."""

    def __init__(self, d_model: int, eps: float = 1e-6, fused: bool = True):
        super().__init__()
        self.eps, self.fused = eps, fused
        self.weight = nn.Parameter(torch.ones(d_model))

    def forward(self, x):
        if self.fused and _HAS_F_RMS_NORM:
            y = F.rms_norm(x.float(), self.weight.shape, eps=self.eps)
        else:
            y = rms_norm(x.float(), eps=self.eps)
        return self.weight * y.to(x.dtype)


def make_norm(config) -> nn.Module:
    if config.norm == "rmsnorm":
        return RMSNorm(config.d_model, config.norm_eps)
    return LayerNorm(config.d_model, config.norm_eps, bias=config.bias)
