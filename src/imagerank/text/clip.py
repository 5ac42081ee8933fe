"""Text search for ``clip:`` backbones: open_clip's text tower scores the index's image vectors.

The index holds the image tower's vectors (`imagerank.embedding.clip`), which live in the same space as the
text tower's; a text is wrapped in a prompt template (CLIP was trained on captions, and a bare label such as
"dalmatian" matches better as "a photo of dalmatian."), encoded, and every image scores its cosine with it.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imagerank.errors import ModelMismatchError

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch
    from torch import nn

PROMPT_TEMPLATE = "a photo of {}."


class ClipTextRanker:
    """Scores fitted images against a text with the text tower of the ``clip:`` backbone ``model``.

    Args:
        model: the index's backbone name, e.g. ``clip:ViT-B-32``.
        weights: the weights file the index was built with (None: open_clip's download or cache).
        template: the prompt the text is put into (``{}`` is replaced by the text).

    Example:
        >>> ranker = ClipTextRanker("clip:ViT-B-32").fit(vectors, labels)
        >>> scores = ranker.score("a dog on a sofa")
    """

    def __init__(
        self, model: str, weights: str | Path | None = None, template: str = PROMPT_TEMPLATE
    ) -> None:
        self.model = model
        self.weights = weights
        self.template = template

    def fit(self, vectors: np.ndarray, labels: Sequence[str | None]) -> ClipTextRanker:
        """Keep the (n, dim) L2-normalised image vectors; labels are not used (CLIP needs none)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        self.text_tower_ = _text_tower(self.model, None if self.weights is None else str(self.weights))
        if vectors.ndim != 2 or vectors.shape[1] != self.text_tower_.dim:
            raise ModelMismatchError(
                f"{self.model} makes {self.text_tower_.dim}-d vectors; these are shaped {vectors.shape}"
            )
        self.vectors_ = vectors
        return self

    def score(self, text: str) -> np.ndarray:
        """The cosine of every fitted image vector with the text's vector (higher is closer)."""
        return self.vectors_ @ self.text_tower_.encode(self.template.format(text))


class _TextTower:
    """A CLIP model's text half and its tokenizer: a text -> its unit-length vector in the shared space."""

    def __init__(self, clip: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], dim: int) -> None:
        self.clip = clip
        self.tokenizer = tokenizer
        self.dim = dim
        self._lock = threading.Lock()  # Hugging Face tokenizers (some models use them) are not thread-safe

    def encode(self, text: str) -> np.ndarray:
        import torch

        with self._lock:
            tokens = self.tokenizer([text])
        with torch.inference_mode():
            vector = self.clip.encode_text(tokens, normalize=True)
        return vector[0].float().numpy()


@functools.lru_cache(maxsize=2)
def _text_tower(model: str, weights: str | None) -> _TextTower:
    """Loaded once per backbone and weights: an index refitted after a change reuses it."""
    from torch import nn

    from imagerank.embedding.clip import tokenizer_for
    from imagerank.embedding.models import load_classifier

    clip, spec = load_classifier(model, weights)
    clip.visual = nn.Identity()  # the index already holds the image vectors; free the image tower's memory
    return _TextTower(clip, tokenizer_for(model), spec.dim)
