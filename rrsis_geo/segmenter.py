"""A loaded model ready for prediction: model + tokenizer + config + device + text cache.

:class:`Segmenter` hides the two ways a model can be called (see
:mod:`rrsis_geo.models.base`): a contract model encodes each expression once
(``encode_text``) and segments batches of tiles with the cached text state broadcast
(``segment``); a plain ``nn.Module`` gets ``forward(images, input_ids, attention_mask)`` with the
token ids repeated per tile.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint_config import CheckpointConfig
from .errors import CheckpointError, Fix, InputError

if TYPE_CHECKING:  # pragma: no cover
    from .knowledge import ModelKnowledge

PathLike = Union[str, "os.PathLike[str]"]



def auto_channels_last(device: torch.device) -> bool:
    """Channels-last on a CPU, where it was measured faster for the default in both precisions
    (scripts/bench_forward_settings.py, 2 cores of an AMD EPYC with avx512_bf16, 256 px tiles,
    batch 8, one run): 31.8 against 19.8 tiles/s in float32, 35.4 against 30.7 under bf16 autocast
    (alternating in-process A/Bs: 1.3-1.5x; README, Benchmarks); not on CUDA until measured there."""
    return device.type == "cpu"


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """The dtype the model runs in: ``fp32`` float32, ``bf16`` bfloat16 autocast, ``auto`` bf16
    only where the hardware has it (a CUDA GPU with bf16, a CPU with AVX512-BF16 or AMX: elsewhere
    torch emulates bf16, slower than float32)."""
    from .cpu import native_bf16
    from .options import check_value, spec

    precision = check_value(spec("precision"), precision)
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    return torch.bfloat16 if device.type == "cpu" and native_bf16() else torch.float32


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names are checked for availability."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda (cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError("CUDA is not available on this machine", fix=Fix("device", "cpu"))
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"there is no {dev}; this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise InputError(f"device {device!r} is not supported; use auto, cpu or cuda")
    return dev


#: the flips test-time augmentation adds to the tile itself (dims of ``[B, C, H, W]``)
FLIPS = ((-1,), (-2,), (-2, -1))


@dataclass
class EncodedText:
    """An expression ready for the model: its text state (contract models) or token ids."""

    expression: str
    input_ids: torch.Tensor  # [1, L] on the device
    attention_mask: torch.Tensor  # [1, L] on the device
    truncated: bool
    state: Optional[Dict[str, torch.Tensor]] = None  # encode_text output, batch 1
    offset: float = 0.0  # the calibration's logit offset for the category it names (rrsis_geo.calibration)


def _follows_contract(model: nn.Module) -> bool:
    from .models.base import ReferringSegmentationModel

    encode = getattr(type(model), "encode_text", None)
    segment = getattr(type(model), "segment", None)
    if encode is None or segment is None:
        return False
    if isinstance(model, ReferringSegmentationModel):
        return (
            encode is not ReferringSegmentationModel.encode_text
            and segment is not ReferringSegmentationModel.segment
        )
    return True


class Segmenter:
    """A model loaded for inference (see :func:`load_model`)."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        config: Dict[str, Any],
        *,
        device: Union[str, torch.device] = "auto",
        checkpoint: Optional[Path] = None,
        compile: bool = False,
        channels_last: Optional[bool] = None,
        precision: str = "auto",
    ) -> None:
        self.device = resolve_device(device)
        self.dtype = resolve_precision(precision, self.device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.config = dict(config)
        self.card = CheckpointConfig.from_dict(self.config)  # the typed fields, checked
        self.checkpoint = checkpoint
        self.channels_last = auto_channels_last(self.device) if channels_last is None else bool(channels_last)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.uses_contract = _follows_contract(self.model)
        self._cache: Dict[str, EncodedText] = {}
        # runs that share the model on several threads (batch workers) fill the text caches one
        # at a time: an expression is encoded, and the known phrasings' file read, only once
        self._encode_lock = threading.RLock()
        self._knowledge: Optional["ModelKnowledge"] = None
        self._sentences: Dict[str, torch.Tensor] = {}
        self._phrasings_read = False
        self.compiled = compile
        if self.uses_contract:
            self._segment_fn = self.model.segment
        else:
            self._segment_fn = self.model.forward
        if compile:
            # shapes are fixed per run (the engine pads the last batch), so no dynamic shapes
            self._segment_fn = torch.compile(self._segment_fn, dynamic=False)

    # ---- config (typed once: rrsis_geo.checkpoint_config) -------------------------------------
    @property
    def name(self) -> str:
        return self.card.display_name(self.checkpoint.name if self.checkpoint else "model")

    @property
    def input_size(self) -> int:
        return self.card.input_size

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def vocabulary(self) -> List[str]:
        return list(self.card.vocabulary)

    @property
    def max_tokens(self) -> int:
        return self.card.max_tokens

    @property
    def gsd_m(self) -> Optional[float]:
        return self.card.gsd_m

    @property
    def knowledge(self) -> "ModelKnowledge":
        """Categories, phrasings and per-category scales of the checkpoint (:mod:`.knowledge`)."""
        if self._knowledge is None:
            self._knowledge = self.card.knowledge
        return self._knowledge

    @property
    def mean(self) -> Sequence[float]:
        return self.card.mean

    @property
    def std(self) -> Sequence[float]:
        return self.card.std

    def __repr__(self) -> str:
        return f"Segmenter({self.name!r}, device={self.device}, input_size={self.input_size})"

    # ---- running ---------------------------------------------------------------------------
    @property
    def precision(self) -> str:
        """``bf16`` or ``fp32``: what :meth:`autocast` runs the model in."""
        return "bf16" if self.dtype == torch.bfloat16 else "fp32"

    def autocast(self):
        """bf16 autocast where :func:`resolve_precision` chose it; nothing (float32) otherwise."""
        if self.dtype == torch.bfloat16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def encode(self, expression: str) -> EncodedText:
        """Tokenise and (for contract models) encode ``expression``, once per expression.

        An expression longer than the model's ``max_tokens`` is truncated with a warning.
        """
        from .models.tokenizer import clean_expression

        text = clean_expression(expression)
        with self._encode_lock:
            cached = self._cache.get(text)
            if cached is None:
                cached = self._cache[text] = self._encode(text)
            return cached

    def _encode(self, text: str) -> EncodedText:
        from .models.tokenizer import tokenize

        tokens = tokenize(self.tokenizer, [text], self.max_tokens)
        ids = tokens.input_ids.to(self.device)
        mask = tokens.attention_mask.to(self.device)
        state = None
        if self.uses_contract:
            with torch.inference_mode(), self.autocast():  # the models keep their text side in float32
                state = self.model.encode_text(ids, mask)
        return EncodedText(text, ids, mask, bool(tokens.truncated[0]), state, self.calibration_offset(text))

    def calibration_offset(self, expression: str) -> float:
        """The logit offset of the category ``expression`` is understood as naming (0 without a
        calibration in the checkpoint or a category; see :mod:`rrsis_geo.calibration`)."""
        calibration = self.card.calibration
        if calibration is None:
            return 0.0
        from .understanding import explain_with

        return calibration.offset_for(explain_with(self, expression).categories)

    def sentence_embeddings(self, texts: Sequence[str]) -> Optional[torch.Tensor]:
        """Unit-length sentence embeddings ``[N, C]`` (CPU, float32) from the model's own text
        encoder: its last hidden states averaged over the tokens, as MiniLM was trained to be
        compared. The known phrasings' come from the checkpoint's stored file when it matches
        (:mod:`.phrasing_cache`). None when the model has no ``text_encoder`` to ask."""
        if getattr(self.model, "text_encoder", None) is None:
            return None
        from . import phrasing_cache
        from .models.tokenizer import clean_expression

        cleaned = [clean_expression(t).lower() for t in texts]
        with self._encode_lock:
            if not self._phrasings_read:
                stored = phrasing_cache.read(self.checkpoint, self.config, phrasing_cache.known_texts(self.knowledge))
                self._sentences.update(stored or {})
                self._phrasings_read = True
            todo = [t for t in dict.fromkeys(cleaned) if t not in self._sentences]
            if todo:
                self._sentences.update(zip(todo, phrasing_cache.embed(self.model, self.tokenizer, todo, self.device)))
            return torch.stack([self._sentences[t] for t in cleaned])

    def probabilities(self, images: torch.Tensor, text: EncodedText, *, tta: bool = False) -> torch.Tensor:
        """Target probability ``[B, H, W]`` (float32) for normalised ``images[B, 3, H, W]``,
        calibrated by ``text.offset``. ``tta``: the mean over the images and their horizontal,
        vertical and double flips, each mapped back (aerial scenes have no up, so every flip is a
        valid view of the same ground).

        Call inside ``torch.inference_mode()`` and :meth:`autocast`.
        """
        if not tta:
            return self._probabilities(images, text)
        total = self._probabilities(images, text)
        for dims in FLIPS:
            total += self._probabilities(images.flip(dims), text).flip(dims)
        return total / (len(FLIPS) + 1)

    def _probabilities(self, images: torch.Tensor, text: EncodedText) -> torch.Tensor:
        batch = images.shape[0]
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        if self.uses_contract:
            logits = self._segment_fn(images, text.state)
        else:
            logits = self._segment_fn(images, text.input_ids.expand(batch, -1), text.attention_mask.expand(batch, -1))
        if isinstance(logits, dict):  # tolerate models returning {"logits": ...}
            logits = logits["logits"]
        if logits.ndim != 4 or logits.shape[0] != batch or logits.shape[1] not in (1, 2):
            raise CheckpointError(
                f"model {self.name!r} returned logits of shape {tuple(logits.shape)}; the contract is [B, 2, H, W]"
            )
        logits = logits.float()
        if logits.shape[-2:] != images.shape[-2:]:
            logits = F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        if logits.shape[1] == 2:  # sigmoid(l1 - l0) = softmax(...)[:, 1]
            return torch.sigmoid(logits[:, 1] - logits[:, 0] + text.offset)
        return torch.sigmoid(logits[:, 0] + text.offset)


def _load_tokenizer_for(path: Path, config: Dict[str, Any]) -> Any:
    from .models.pretrained import resolve_pretrained
    from .models.tokenizer import load_tokenizer

    if (path / "tokenizer.json").is_file() or (path / "vocab.txt").is_file():
        return load_tokenizer(path)
    source = (config.get("text") or {}).get("tokenizer")
    if source:
        return load_tokenizer(resolve_pretrained(str(source)))
    raise CheckpointError(
        f"checkpoint {path} holds no tokenizer files and its config names no text.tokenizer source"
    )


def load_model(
    checkpoint: Optional[PathLike] = None,
    device: Union[str, torch.device] = "auto",
    *,
    compile: bool = False,
    channels_last: Optional[bool] = None,
    precision: str = "auto",
) -> Segmenter:
    """Load a checkpoint directory (default: see :mod:`rrsis_geo.catalog`) for prediction.

    ``device``: ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    ``compile`` wraps the model with ``torch.compile`` (worth it for long runs on a GPU).
    ``precision``: ``"auto"`` (bf16 where the device has it natively), ``"bf16"``, ``"fp32"``.
    ``channels_last``: None chooses per device (:func:`auto_channels_last`). Batch norms are folded
    into their convolutions (:mod:`rrsis_geo.models.fold`): the model is for prediction only.
    """
    from .catalog import resolve_checkpoint
    from .errors import RRSISError
    from .models.checkpoint import load_checkpoint
    from .models.fold import fold_batch_norms

    dev = resolve_device(device)
    path = resolve_checkpoint(checkpoint)
    try:
        model, config = load_checkpoint(path, map_location=dev)
    except RRSISError:
        raise
    except Exception as exc:  # a builder failing on a malformed config
        raise CheckpointError(f"cannot build the model of checkpoint {path}: {exc!r}; the checkpoint is corrupt") from exc
    tokenizer = _load_tokenizer_for(path, config)
    fold_batch_norms(model.eval())  # the model is ours and only predicts: one pass per conv + norm
    return Segmenter(model, tokenizer, config, device=dev, checkpoint=path, compile=compile, channels_last=channels_last,
                     precision=precision)
