"""Transformer Anatomy: the course library. One concept per module; see README.md for the map."""

from .config import PRESETS, ModelConfig
from .interop import from_hf
from .kv_cache import KVCache
from .models import DecoderLM, EncoderDecoder, EncoderLM

__version__ = "0.1.0"
__all__ = [
    "ModelConfig",
    "PRESETS",
    "DecoderLM",
    "EncoderLM",
    "EncoderDecoder",
    "KVCache",
    "from_hf",
    "__version__",
]
