"""imagerank: semantic image search over a folder of images, ranked by meaning with a pretrained backbone.

The names below are imported on first use (PEP 562), so `import imagerank` (and the command line, which
imports it) loads no deep-learning framework until something needs one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "BackboneSpec": "imagerank.models",
    "BadImageError": "imagerank.errors",
    "Embedder": "imagerank.embedding",
    "ImageRankError": "imagerank.errors",
    "ImageRecord": "imagerank.store",
    "Index": "imagerank.index",
    "IndexNotFoundError": "imagerank.errors",
    "IndexReport": "imagerank.index",
    "ModelMismatchError": "imagerank.errors",
    "UnknownModelError": "imagerank.errors",
    "WeightsNotFoundError": "imagerank.errors",
    "create_embedder": "imagerank.embedding",
    "embed": "imagerank.embedding",
    "list_backbones": "imagerank.models",
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
    from imagerank.embedding import Embedder, create_embedder, embed
    from imagerank.errors import (
        BadImageError,
        ImageRankError,
        IndexNotFoundError,
        ModelMismatchError,
        UnknownModelError,
        WeightsNotFoundError,
    )
    from imagerank.index import Index, IndexReport
    from imagerank.models import BackboneSpec, list_backbones
    from imagerank.store import ImageRecord


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imagerank' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
