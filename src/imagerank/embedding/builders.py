"""How the registered backbones are built and where their weights come from: the network builders,
feature cuts and weight sources that `models` registers. PyTorch, torchvision and timm are imported inside
the functions, only when a network is built.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


def _pooled(features: nn.Module) -> nn.Module:
    from torch import nn

    return nn.Sequential(features, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _torchvision_download(weights_enum: str) -> Callable[[], dict]:
    def download() -> dict[str, torch.Tensor]:
        import torchvision.models as tv

        weights = getattr(tv, weights_enum).IMAGENET1K_V1
        return weights.get_state_dict(progress=True, check_hash=False)

    return download


def _torchvision_builder(builder_name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import torchvision.models as tv

        return getattr(tv, builder_name)(weights=None)

    return build


def _package_file(module: str, *parts: str) -> Callable[[], Path | None]:
    def find() -> Path | None:
        spec = importlib_util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations)), *parts)

    return find


def _vgg_fc2(classifier: nn.Module) -> nn.Module:
    """Keras-style `fc2`: conv features, 7x7 pooling, then the first two fully connected layers + ReLU."""
    from torch import nn

    return nn.Sequential(classifier.features, classifier.avgpool, nn.Flatten(), *classifier.classifier[:5])


def _resnet_features(classifier: nn.Module) -> nn.Module:
    from torch import nn

    classifier.fc = nn.Identity()
    return classifier


def _timm_features(classifier: nn.Module) -> nn.Module:
    classifier.reset_classifier(0)
    return classifier


def _build_timm(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False)

    return build


def _timm_download(name: str) -> Callable[[], dict]:
    def download() -> dict[str, torch.Tensor]:
        import timm

        return timm.create_model(name, pretrained=True).state_dict()

    return download
