"""HookPoint: an identity module whose forward hooks let `course.capture` read (or edit) activations."""
import torch.nn as nn


class HookPoint(nn.Identity):
    """Returns its input. Named like TransformerLens hooks (`blocks.0.attn.hook_pattern`)."""

    @property
    def active(self) -> bool:
        return bool(self._forward_hooks)
