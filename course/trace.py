"""Per-operation trace of a forward pass: which operation runs, on which shape, owning how many parameters.

    steps = trace(model, idx)          # ids -> embeddings -> blocks -> final norm -> logits, in call order
    print(format_trace(steps))         # block 0 in full, the other blocks folded into one line

Steps come from forward hooks on every module that owns parameters (embeddings, linear maps, norms) and on the
attention hooks that show the per-head tensors (q, k, v as (B, H, T, d_head), the weights (B, H, T_q, T_k)).
Each parameter tensor is credited to the first step that uses it, so a tied LM head owns 0 and the parameters
of all steps add up to the model's. Works on the meta device (real shapes, no storage, no arithmetic): GPT-2
small traces in a second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn as nn

from .capture import hook_points

# Attention hooks shown as steps, and what they hold. The q/k/v hooks show (B, T, H, d_head) (TransformerLens'
# layout); the trace reports the (B, H, T, d_head) layout attention computes with.
ATTENTION_STEPS = {
    "hook_q": "queries, split into heads",
    "hook_k": "keys, split into heads",
    "hook_v": "values, split into heads",
    "hook_pattern": "softmax(QKᵀ/√d_head), masked",
    "hook_z": "attention of each head: A·V",
}
PER_HEAD = ("hook_q", "hook_k", "hook_v", "hook_z")


@dataclass(frozen=True)
class Step:
    name: str  # module path, "blocks.0.attn.q_proj" (a decoder's `transformer.` prefix dropped)
    op: str  # module class or what an attention hook holds
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    params: int  # parameters first used here (a tied head: 0)
    tied_to: str | None = None  # the step that owns this step's (shared) weight, if any


def _owned_leaves(model: nn.Module) -> dict[str, nn.Module]:
    """Modules that own parameters directly (Embedding, Linear, LayerNorm, ...), by stable name."""
    return {
        name.removeprefix("transformer."): m
        for name, m in model.named_modules()
        if any(True for _ in m.parameters(recurse=False))
    }


def trace(model: nn.Module, *args, **kwargs) -> list[Step]:
    """Run `model(*args, **kwargs)` once and return its steps in call order (the model is left unhooked).

    Capturing the attention weights (B, H, T, T) switches attention to its explicit path, whose softmax reads
    values: on the meta device the weights are left out (q, k, v and the per-head outputs remain)."""
    steps, owner = [], {}  # owner: id(parameter) -> name of the step that used it first
    handles = []
    meta = any(p.is_meta for p in model.parameters())

    def record(name, op, module=None, per_head=False):
        def hook(mod, inputs, output):
            params, tied = 0, None
            for p in module.parameters(recurse=False) if module is not None else ():
                if id(p) in owner:
                    tied = owner[id(p)]
                else:
                    owner[id(p)], params = name, params + p.numel()
            shape_in = tuple(inputs[0].shape)
            if per_head:  # the hook sees (B, T, H, d_head): report (B, T, H·d_head) -> (B, H, T, d_head)
                B, T, H, d = shape_in
                shape_in, output = (B, T, H * d), output.transpose(1, 2)
                if name.endswith("hook_z"):  # queries (B, H, T, d_head) in, one output per query out
                    shape_in = tuple(output.shape)
            steps.append(Step(name, op, shape_in, tuple(output.shape), params, tied))

        return hook

    for name, m in _owned_leaves(model).items():
        handles.append(m.register_forward_hook(record(name, type(m).__name__, m)))
    for name, point in hook_points(model).items():
        kind = name.rsplit(".", 1)[-1]
        if kind in ATTENTION_STEPS and not (kind == "hook_pattern" and meta):
            handles.append(
                point.register_forward_hook(record(name, ATTENTION_STEPS[kind], per_head=kind in PER_HEAD))
            )
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    return steps


def block_of(step: Step) -> int | None:
    """The block index of a step (`blocks.3.mlp.up` -> 3), None outside the blocks."""
    match = re.match(r"(?:\w+\.)?blocks\.(\d+)\.", step.name)
    return int(match.group(1)) if match else None


def format_trace(steps: list[Step], show_blocks: tuple[int, ...] = (0,)) -> str:
    """A table of the steps; blocks not in `show_blocks` are folded into one line (count and parameters)."""
    rows = [f"{'step':<26} {'operation':<30} {'input':<22} {'output':<22} {'parameters':>12}"]
    folded: dict[int, int] = {}
    for s in steps:
        block = block_of(s)
        if block is not None and block not in show_blocks:
            folded[block] = folded.get(block, 0) + s.params
            continue
        if folded:
            rows.append(_folded_line(folded))
            folded = {}
        params = f"tied: {s.tied_to}" if s.tied_to else f"{s.params:,}"
        rows.append(f"{s.name:<26} {s.op:<30} {str(s.in_shape):<22} {str(s.out_shape):<22} {params:>12}")
    if folded:
        rows.append(_folded_line(folded))
    rows.append(f"{'total':<26} {'':<30} {'':<22} {'':<22} {sum(s.params for s in steps):>12,}")
    return "\n".join(rows)


def _folded_line(folded: dict[int, int]) -> str:
    first, last, n = min(folded), max(folded), len(folded)
    each = set(folded.values())
    per = f"{each.pop():,} each" if len(each) == 1 else "unequal"
    name = f"blocks.{first}" + (f"–{last}" if n > 1 else "")
    what = f"{n} more block{'s' * (n > 1)}, same steps"
    return f"{name:<26} {what:<30} {'':<45} {per:>12}"
