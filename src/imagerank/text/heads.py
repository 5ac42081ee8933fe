"""The ImageNet-1k classifier head of a backbone, as plain arrays, cached so a text query loads no network.

The head is the last fully connected layer that maps the backbone's pooled features (what the index
stores, before L2 normalisation) to the 1,000 ImageNet logits: MobileNetV2's and EfficientNet's
classifier, ResNet's ``fc``, VGG16's last layer for ``vgg16_fc2``, a timm model's classifier. A backbone
whose features feed no such layer (``vgg16``: its pooled conv5 features are not the head's input) has none,
and text search says so.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from imagerank.embedding.engines.export import cache_dir
from imagerank.embedding.models import load_classifier, spec_with_local_weights
from imagerank.errors import ImageRankError

IMAGENET_CLASSES = 1000


@dataclass(frozen=True)
class ClassifierHead:
    """logits = features @ weight.T + bias, for the backbone's (unnormalised) pooled features."""

    weight: np.ndarray
    """(1000, dim) float32."""
    bias: np.ndarray
    """(1000,) float32."""


def classifier_head(model: str, weights: str | Path | None = None) -> ClassifierHead:
    """The head of backbone ``model`` with ``weights`` (default: its offline or downloaded weights).

    Read from the cache when the weights are a local file; otherwise (and the first time) taken from the
    network that `load_classifier` builds. Raises ImageRankError when there is none.
    """
    spec = spec_with_local_weights(model, weights)
    cached = _cache_file(spec.vector_id()) if spec is not None else None
    if cached is not None and cached.is_file():
        with np.load(cached) as stored:
            return ClassifierHead(stored["weight"], stored["bias"])
    classifier, loaded_spec = load_classifier(model, weights)
    head = _last_linear(classifier, loaded_spec.dim, model)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f"{cached.stem}.{os.getpid()}.partial.npz")
        np.savez(partial, weight=head.weight, bias=head.bias)
        os.replace(partial, cached)
    return head


def _last_linear(classifier: object, dim: int, model: str) -> ClassifierHead:
    from torch import nn

    linears = [module for module in classifier.modules() if isinstance(module, nn.Linear)]
    last = linears[-1] if linears else None
    if last is None or last.out_features != IMAGENET_CLASSES or last.in_features != dim:
        raise ImageRankError(
            f"backbone {model!r} has no ImageNet-1k classifier head on the features it indexes, so the "
            "offline text bridge cannot search it; index with mobilenet_v2, efficientnet_lite0, resnet50, "
            "vgg16_fc2 or a timm model with a 1000-class head"
        )
    weight = last.weight.detach().float().cpu().numpy()
    bias = last.bias.detach().float().cpu().numpy() if last.bias is not None else np.zeros(len(weight))
    return ClassifierHead(np.ascontiguousarray(weight, np.float32), bias.astype(np.float32))


def _cache_file(vector_id: str) -> Path:
    return cache_dir() / "heads" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', vector_id)}.npz"
