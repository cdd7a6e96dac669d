"""The known phrasings' embeddings stored with a checkpoint: used when they match, ignored when not."""

from __future__ import annotations

import json
import shutil

import torch

import rrsis_geo
from rrsis_geo import phrasing_cache
from rrsis_geo.models.presets import init_checkpoint, preset


def checkpoint(tmp_path):
    config = preset("tiny-lgce")
    config.update(phrasings={"building": ["building", "the houses"], "car": ["car", "parked cars"]},
                  vocabulary=["red", "along the road"], gsd_m=0.5)
    return init_checkpoint(config, tmp_path / "tiny")


def test_stored_embeddings_are_what_the_encoder_computes_and_are_used(tmp_path, monkeypatch):
    path = checkpoint(tmp_path)
    seg = rrsis_geo.load_model(path, device="cpu")
    assert phrasing_cache.write(path, seg.model, seg.tokenizer, seg.config) == path / phrasing_cache.FILE_NAME
    # readable like the weights beside it (safetensors alone writes 0600)
    from rrsis_geo.io_utils import current_umask

    assert (path / phrasing_cache.FILE_NAME).stat().st_mode & 0o777 == 0o666 & ~current_umask()
    texts = phrasing_cache.known_texts(seg.knowledge)
    stored = phrasing_cache.read(path, seg.config, texts)
    assert stored is not None and list(stored) == texts
    fresh = phrasing_cache.embed(seg.model, seg.tokenizer, texts, torch.device("cpu"))
    assert torch.allclose(torch.stack([stored[t] for t in texts]), fresh, atol=1e-5)
    # a fresh model reads them instead of running the encoder over the known phrasings
    calls = []
    real = phrasing_cache.embed
    monkeypatch.setattr(phrasing_cache, "embed", lambda m, t, texts, d: calls.append(list(texts)) or real(m, t, texts, d))
    explanation = rrsis_geo.explain("houses", segmenter=rrsis_geo.load_model(path, device="cpu"))
    assert calls == [["houses"]]  # only the expression itself
    assert explanation.nearest and explanation.nearest[0].similarity is not None


def test_a_file_that_does_not_match_is_ignored(tmp_path):
    path = checkpoint(tmp_path)
    seg = rrsis_geo.load_model(path, device="cpu")
    phrasing_cache.write(path, seg.model, seg.tokenizer, seg.config)
    texts = phrasing_cache.known_texts(seg.knowledge)
    assert phrasing_cache.read(path, seg.config, texts[:-1]) is None  # other phrasings
    other = tmp_path / "other"
    shutil.copytree(path, other)
    config = json.loads((other / "config.json").read_text())
    with open(other / "model.safetensors", "ab") as handle:  # other weights (a trained text encoder)
        handle.write(b" ")
    assert phrasing_cache.read(other, config, texts) is None
    (path / phrasing_cache.FILE_NAME).write_bytes(b"not a safetensors file")
    assert phrasing_cache.read(path, seg.config, texts) is None
