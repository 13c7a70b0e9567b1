"""Tensor shapes in signatures, TransformerLens-style: `Float[Tensor, "B T d_model"]` (jaxtyping).

A name binds one size within a call (every "T" of a call is the same T); "*batch" is any number of leading
axes; "#H" also accepts 1 (broadcast). The annotations are documentation that can be checked:
tests/test_shapes.py runs the models with every annotated call checked (jaxtyping's import hook + beartype).
"""

from jaxtyping import Bool, Float, Int
from torch import Tensor

__all__ = ["Bool", "Float", "Int", "Tensor"]
