"""Model architectures, registry and checkpoint format.

See :mod:`rrsis_geo.models.base` for the model contract every architecture follows.
"""

from .base import ReferringSegmentationModel, TextState, expand_text_state
from .checkpoint import load_checkpoint, read_config, save_checkpoint
from .registry import build_model, list_architectures, register_model, wants_pretrained
from .tokenizer import Tokens, load_tokenizer, save_tokenizer, tokenize

__all__ = [
    "ReferringSegmentationModel",
    "TextState",
    "Tokens",
    "build_model",
    "expand_text_state",
    "list_architectures",
    "load_checkpoint",
    "load_tokenizer",
    "read_config",
    "register_model",
    "save_checkpoint",
    "save_tokenizer",
    "tokenize",
    "wants_pretrained",
]
