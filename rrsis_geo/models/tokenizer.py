"""Tokenisation of referring expressions, shared by inference and training.

Expressions are tokenised with the checkpoint's own tokenizer files (BERT WordPiece for every
architecture here), padded to the model's fixed length (``max_tokens``, 20 in the papers) so
that every batch has one shape.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Sequence, Tuple, Union

from ..errors import CheckpointError, ExpressionError

if TYPE_CHECKING:  # pragma: no cover - torch loads only when tokens are made
    import torch

PathLike = Union[str, "os.PathLike[str]"]


class WordPieceTokenizer:
    """A checkpoint's BERT WordPiece tokenizer, run by the ``tokenizers`` library directly.

    It answers the part of transformers' tokenizer interface this project uses (``__call__`` for
    ids, ``convert_ids_to_tokens``, ``convert_tokens_to_ids``, ``decode``, ``len``, the special
    tokens, ``save_pretrained``) with the same ids (``tests/models/test_lean_modules.py``), without
    importing transformers (~0.8 s per process). The backend is never reconfigured after loading
    (no truncation or padding set on it), so threads may share it.
    """

    def __init__(self, backend: Any, config: Dict[str, Any]) -> None:
        backend.no_truncation()
        backend.no_padding()
        self._backend = backend
        self._config = dict(config)
        self.unk_token = str(config.get("unk_token") or backend.model.unk_token)
        self.pad_token = _special(config, "pad_token")
        self.all_special_tokens = [t.content for t in backend.get_added_tokens_decoder().values() if t.special]

    @property
    def unk_token_id(self) -> int:
        return int(self._backend.token_to_id(self.unk_token))

    @property
    def pad_token_id(self) -> int:
        pad = self._backend.token_to_id(self.pad_token)
        return int(pad) if pad is not None else 0

    def __len__(self) -> int:
        return int(self._backend.get_vocab_size(with_added_tokens=True))

    def __call__(self, texts: Union[str, Sequence[str]], add_special_tokens: bool = True) -> Dict[str, Any]:
        """``{"input_ids": ids}`` (a list, or a list of lists for several texts), unpadded."""
        if isinstance(texts, str):
            return {"input_ids": self._backend.encode(texts, add_special_tokens=add_special_tokens).ids}
        return {"input_ids": [e.ids for e in self._backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)]}

    def padded(self, texts: Sequence[str], length: int) -> Tuple[List[List[int]], List[List[int]], List[int]]:
        """Ids and attention masks of ``texts`` cut (special tokens kept) or padded to ``length``,
        and each text's token count before the cut (special tokens included)."""
        specials = self._backend.num_special_tokens_to_add(False)
        ids, masks, counts = [], [], []
        for encoding in self._backend.encode_batch(list(texts), add_special_tokens=False):
            counts.append(len(encoding.ids) + specials)
            encoding.truncate(max(0, length - specials))
            encoding = self._backend.post_process(encoding, add_special_tokens=True)
            encoding.pad(length, pad_id=self.pad_token_id, pad_token=self.pad_token)
            ids.append(encoding.ids)
            masks.append(encoding.attention_mask)
        return ids, masks, counts

    def convert_ids_to_tokens(self, ids: Sequence[int]) -> List[str]:
        return [self._backend.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, token: str) -> int:
        """The token's id; the unknown token's for a token outside the vocabulary (as transformers)."""
        found = self._backend.token_to_id(token)
        return int(found) if found is not None else self.unk_token_id

    def decode(self, ids: Any, skip_special_tokens: bool = False) -> str:
        values = ids.tolist() if hasattr(ids, "tolist") else list(ids)
        return str(self._backend.decode([int(i) for i in values], skip_special_tokens=skip_special_tokens))

    def save_pretrained(self, directory: PathLike) -> None:
        """Write ``tokenizer.json`` and ``tokenizer_config.json`` into ``directory``."""
        path = Path(directory)
        self._backend.save(str(path / "tokenizer.json"))
        (path / "tokenizer_config.json").write_text(json.dumps(self._config, indent=2) + "\n", encoding="utf-8")


#: BERT's special tokens and their names when a tokenizer config does not give them
BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]", "mask_token": "[MASK]"}


def _special(config: Dict[str, Any], role: str) -> str:
    return str(config.get(role) or BERT_SPECIALS[role])


def _wordpiece_from_vocab(vocab: Path, config: Dict[str, Any]) -> Any:
    """BERT's tokenizer pipeline around a bare ``vocab.txt`` (lower-casing as its config says)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    cls, sep = _special(config, "cls_token"), _special(config, "sep_token")
    backend = Tokenizer(models.WordPiece.from_file(str(vocab), unk_token=_special(config, "unk_token")))
    backend.normalizer = normalizers.BertNormalizer(lowercase=bool(config.get("do_lower_case", True)),
                                                    strip_accents=config.get("strip_accents"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = [_special(config, role) for role in BERT_SPECIALS]
    backend.add_special_tokens([t for t in specials if backend.token_to_id(t) is not None])
    if backend.token_to_id(cls) is None or backend.token_to_id(sep) is None:
        raise CheckpointError(f"{vocab} lacks BERT's {cls} or {sep} token")
    backend.post_processor = processors.BertProcessing((sep, backend.token_to_id(sep)), (cls, backend.token_to_id(cls)))
    backend.decoder = decoders.WordPiece()
    return backend


def _tokenizer_config(path: Path) -> Dict[str, Any]:
    """``tokenizer_config.json`` over ``special_tokens_map.json``, special tokens as plain text
    (transformers writes them as ``{"content": ...}`` objects in some versions)."""
    config: Dict[str, Any] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        if (path / name).is_file():
            config.update(json.loads((path / name).read_text(encoding="utf-8")))
    plain = {k: v["content"] if isinstance(v, dict) and "content" in v else v for k, v in config.items()}
    return {k: v for k, v in plain.items() if not isinstance(v, dict)}


def load_tokenizer(directory: PathLike) -> WordPieceTokenizer:
    """Load the tokenizer stored in a checkpoint (or encoder) directory, offline."""
    from tokenizers import Tokenizer

    path = Path(directory)
    if not any((path / name).is_file() for name in ("tokenizer.json", "vocab.txt")):
        raise CheckpointError(f"{path} holds no tokenizer files (tokenizer.json or vocab.txt)")
    try:
        config = _tokenizer_config(path)
        if (path / "tokenizer.json").is_file():
            backend = Tokenizer.from_file(str(path / "tokenizer.json"))
        else:
            backend = _wordpiece_from_vocab(path / "vocab.txt", config)
        return WordPieceTokenizer(backend, config)
    except CheckpointError:
        raise
    except Exception as exc:  # tokenizers raises plain Exceptions for bad files
        raise CheckpointError(f"cannot load the tokenizer in {path}: {exc}") from exc


def save_tokenizer(tokenizer: WordPieceTokenizer, directory: PathLike) -> None:
    """Write the tokenizer files into ``directory`` (without touching its config.json)."""
    tokenizer.save_pretrained(directory)


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


def tokenize(tokenizer: WordPieceTokenizer, expressions: Sequence[str], max_tokens: int, *, warn: bool = True) -> Tokens:
    """Tokenise ``expressions`` to ``[B, max_tokens]`` ids + attention mask.

    An expression longer than ``max_tokens`` (special tokens included) is truncated; a warning
    says so when ``warn`` is set, and :attr:`Tokens.truncated` records it.
    """
    import torch

    texts = [clean_expression(e) for e in expressions]
    ids, mask, counts = tokenizer.padded(texts, max_tokens)
    truncated = [count > max_tokens for count in counts]
    if warn:
        for text, count, cut in zip(texts, counts, truncated):
            if cut:
                warnings.warn(
                    f"expression {text!r} has {count} tokens; the model reads only the first "
                    f"{max_tokens} (special tokens included), the rest is ignored",
                    stacklevel=2,
                )
    return Tokens(torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long), truncated)
