"""imagerank: semantic image search over a folder of images, ranked by meaning with a pretrained backbone."""

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
