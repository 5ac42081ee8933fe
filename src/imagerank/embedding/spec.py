"""What a backbone is: its preprocessing and output (`BackboneSpec`) and its registry entry (`BackboneEntry`).

Kept apart from the registry (`models`) so that backbone families defined in modules of their own
(open_clip's, in `clip`) can describe themselves without importing the registry that imports them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch
    from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_RESAMPLING = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class BackboneSpec:
    """What a backbone produces and the preprocessing it expects.

    With `crop`, images are resized so their shorter side is `resize_size`, then center-cropped to
    `input_size` squared (torchvision's and timm's evaluation transform). Without it, the whole image is
    resized to `input_size` squared, aspect ratio not kept (Keras' `load_img(target_size=...)`): nothing at
    the borders is lost, which suits retrieval. Normalization (`mean`, `std`) happens inside the network,
    so pipelines move compact uint8 arrays.
    """

    name: str
    dim: int
    input_size: int = 224
    resize_size: int = 256
    interpolation: str = "bilinear"
    crop: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    weights_id: str = ""

    def preprocessing(self) -> dict[str, object]:
        """The preprocessing as plain data, for manifests."""
        fields = asdict(self)
        keys = ("input_size", "resize_size", "crop", "interpolation", "mean", "std")
        return {key: fields[key] for key in keys}

    def vector_id(self) -> str:
        """Names what decides the vectors: backbone, weights and preprocessing. Equal ids, equal vectors."""
        recipe = json.dumps([self.name, self.weights_id, self.preprocessing()], sort_keys=True)
        return f"{self.name}-{self.weights_id}-{hashlib.sha256(recipe.encode()).hexdigest()[:8]}"

    def prepare(self, image: Image.Image) -> np.ndarray:
        """Resize the shorter side, center-crop, and return an (H, W, 3) uint8 array.

        Only the source region that ends up in the crop is resampled (Pillow's `box`), which gives the
        same pixels as resizing the whole image and then cropping, at a fraction of the cost.
        """
        size = (self.input_size, self.input_size)
        if not self.crop:
            return np.asarray(image.convert("RGB").resize(size, _RESAMPLING[self.interpolation]), np.uint8)
        width, height = image.size
        scale = min(width, height) / self.resize_size
        side = min(self.input_size * scale, width, height)
        left, top = (width - side) / 2, (height - side) / 2
        box = (left, top, left + side, top + side)
        cropped = image.convert("RGB").resize(size, _RESAMPLING[self.interpolation], box=box)
        return np.asarray(cropped, dtype=np.uint8)


@dataclass(frozen=True)
class BackboneEntry:
    """One registry entry. `download` returns a state dict through the owning library's cache."""

    spec: BackboneSpec
    build_classifier: Callable[[], nn.Module]
    to_features: Callable[[nn.Module], nn.Module]
    weights_file: str
    packaged_weights: Callable[[], Path | None] = lambda: None
    download: Callable[[], dict[str, torch.Tensor]] | None = None
    description: str = ""
    weights_hint: str = ""
    """Where the weights come from, for the error when they are missing (torch's cache otherwise)."""
