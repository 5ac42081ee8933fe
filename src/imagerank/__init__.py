"""imagerank: semantic image search. Index a folder of images with a pretrained backbone and rank by meaning."""

__version__ = "0.1.0"

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
