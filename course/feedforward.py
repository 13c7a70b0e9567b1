"""Position-wise feed-forward networks: each token is transformed on its own (no mixing across positions)."""

import torch.nn as nn
import torch.nn.functional as F

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),  # exact (erf) GELU, as BERT
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),  # GPT-2's "gelu_new"
    "relu": F.relu,
    "silu": F.silu,  # x·sigmoid(x), a.k.a. swish; the gate of SwiGLU (mlp="swiglu"), here ungated
}


class MLP(nn.Module):
    """down(act(up(x))): d_model -> d_ff -> d_model. Parameters ≈ 2·d_model·d_ff (8·D² at d_ff = 4D)."""

    def __init__(self, d_model: int, d_ff: int, activation: str = "gelu_tanh", bias: bool = True):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {list(ACTIVATIONS)}")
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)
        self.act = ACTIVATIONS[activation]

    def forward(self, x):  # (B, T, d_model) -> (B, T, d_model)
        return self.down(self.act(self.up(x)))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), as in Llama: three matrices, ≈ 3·d_model·d_ff parameters."""

    def __init__(self, d_model: int, d_ff: int, bias: bool = False):
        super().__init__()
        self.gate = nn.Linear(d_model, d_ff, bias=bias)
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


def make_mlp(config) -> nn.Module:
    if config.mlp == "swiglu":
        return SwiGLU(config.d_model, config.d_ff, config.bias)
    return MLP(config.d_model, config.d_ff, config.mlp, config.bias)
