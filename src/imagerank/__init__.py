"""imagerank: semantic image search over a folder of images, ranked by meaning with a pretrained backbone.

The names below are imported on first use (PEP 562), so `import imagerank` (and the command line, which
imports it) loads no deep-learning framework until something needs one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "BackboneSpec": "imagerank.embedding.models",
    "BadImageError": "imagerank.errors",
    "Embedder": "imagerank.embedding.embedder",
    "ImageRankError": "imagerank.errors",
    "ImageRecord": "imagerank.store.base",
    "Index": "imagerank.index.core",
    "IndexNotFoundError": "imagerank.errors",
    "IndexReport": "imagerank.index.building",
    "ModelMismatchError": "imagerank.errors",
    "UnknownModelError": "imagerank.errors",
    "WeightsNotFoundError": "imagerank.errors",
    "create_embedder": "imagerank.embedding.factory",
    "embed": "imagerank.embedding.factory",
    "list_backbones": "imagerank.embedding.models",
}

__all__ = [
    "BackboneSpec",
    "BadImageError",
    "Embedder",
    "ImageRankError",
    "ImageRecord",
    "Index",
    "IndexNotFoundError",
    "IndexReport",
    "ModelMismatchError",
    "UnknownModelError",
    "WeightsNotFoundError",
    "__version__",
    "create_embedder",
    "embed",
    "list_backbones",
]

if TYPE_CHECKING:
    from imagerank.embedding.embedder import Embedder
    from imagerank.embedding.factory import create_embedder, embed
    from imagerank.embedding.models import BackboneSpec, list_backbones
    from imagerank.errors import (
        BadImageError,
        ImageRankError,
        IndexNotFoundError,
        ModelMismatchError,
        UnknownModelError,
        WeightsNotFoundError,
    )
    from imagerank.index.building import IndexReport
    from imagerank.index.core import Index
    from imagerank.store.base import ImageRecord


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imagerank' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
