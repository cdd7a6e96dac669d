"""Tokenisation of referring expressions, shared by inference and training.

Expressions are tokenised with the checkpoint's own tokenizer files (BERT WordPiece for every
architecture here), padded to the model's fixed length (``max_tokens``, 20 in the papers) so
that every batch has one shape.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, List, Sequence, Union

from ..errors import CheckpointError, ExpressionError

if TYPE_CHECKING:  # pragma: no cover - torch loads only when tokens are made
    import torch

PathLike = Union[str, "os.PathLike[str]"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


def load_tokenizer(directory: PathLike) -> Any:
    """Load the tokenizer stored in a checkpoint (or encoder) directory, offline."""
    from transformers import AutoTokenizer

    path = Path(directory)
    if not any((path / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        raise CheckpointError(f"{path} holds no tokenizer files (tokenizer.json or vocab.txt)")
    try:
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:  # transformers raises many types for bad files
        raise CheckpointError(f"cannot load the tokenizer in {path}: {exc}") from exc


def save_tokenizer(tokenizer: Any, directory: PathLike) -> None:
    """Write the tokenizer files into ``directory`` (without touching its config.json)."""
    path = Path(directory)
    saved = tokenizer.save_pretrained(str(path))
    # transformers may write a config.json-like file only for models; make sure ours is not clobbered
    del saved


@dataclass
class Tokens:
    """Padded token ids of a batch of expressions."""

    input_ids: "torch.Tensor"  # [B, L] long
    attention_mask: "torch.Tensor"  # [B, L] long, 1 for real tokens
    truncated: List[bool]  # per expression: was it cut to max_tokens?


def clean_expression(expression: str) -> str:
    """Collapse white space; reject an empty expression."""
    text = " ".join(str(expression).split())
    if not text:
        raise ExpressionError("the referring expression is empty; type what to segment, e.g. 'building along the road'")
    return text


def tokenize(tokenizer: Any, expressions: Sequence[str], max_tokens: int, *, warn: bool = True) -> Tokens:
    """Tokenise ``expressions`` to ``[B, max_tokens]`` ids + attention mask.

    An expression longer than ``max_tokens`` (special tokens included) is truncated; a warning
    says so when ``warn`` is set, and :attr:`Tokens.truncated` records it.
    """
    texts = [clean_expression(e) for e in expressions]
    full = tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
    truncated = [len(ids) > max_tokens for ids in full]
    enc = tokenizer(
        texts,
        add_special_tokens=True,
        truncation=True,
        max_length=max_tokens,
        padding="max_length",
        return_tensors="pt",
    )
    if warn:
        for text, ids, cut in zip(texts, full, truncated):
            if cut:
                warnings.warn(
                    f"expression {text!r} has {len(ids)} tokens; the model reads only the first "
                    f"{max_tokens} (special tokens included), the rest is ignored",
                    stacklevel=2,
                )
    return Tokens(enc["input_ids"].long(), enc["attention_mask"].long(), truncated)
