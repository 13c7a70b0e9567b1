"""HookPoint: an identity module whose forward hooks let `course.capture` read or edit activations."""

import torch.nn as nn


class HookPoint(nn.Identity):
    """Returns its input. Named like TransformerLens hooks (`blocks.0.attn.hook_pattern`)."""

    @property
    def active(self) -> bool:
        return bool(self._forward_hooks or self._forward_pre_hooks)

    def __call__(self, x):
        # Fast path: an unhooked HookPoint costs one attribute check, not a module call (decode is
        # launch-bound).
        return super().__call__(x) if self.active else x
