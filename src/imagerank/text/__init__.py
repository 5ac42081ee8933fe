"""Search by words: text rankers that score an index's images against a sentence.

A `TextRanker` is fitted once on an index's vectors and labels (like a ranking method) and then gives every
fitted image a score for a text, higher meaning closer. Which ranker an index uses follows from its backbone:

- ``clip:`` backbones (open_clip) answer with their own text tower (`imagerank.text.clip`);
- every other backbone goes through the offline bridge (`imagerank.text.bridge`): the text is matched to the
  ImageNet classes of the backbone's classifier head and to the index's own labels.

This package reads vectors and labels; it never reaches into the store or the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from imagerank.errors import ImageRankError

MAX_TEXT_CHARS = 1000
"""The longest text query accepted (a sentence or a short paragraph, not a document)."""


class TextQueryError(ImageRankError, ValueError):
    """A text query that cannot be searched: empty, only whitespace, or too long."""


class TextRanker(Protocol):
    """Scores the images it was fitted on against a text."""

    def fit(self, vectors: np.ndarray, labels: Sequence[str | None]) -> TextRanker:
        """Learn from (n, dim) L2-normalised image vectors and their labels (None: unlabelled)."""
        ...

    def score(self, text: str) -> np.ndarray:
        """One float per fitted image, in fitted order; higher is closer to ``text``."""
        ...


def checked_text(text: str) -> str:
    """``text`` stripped, or TextQueryError saying why it cannot be a query."""
    if not isinstance(text, str):
        raise TextQueryError(f"a text query must be a string, not {type(text).__name__}")
    stripped = " ".join(text.split())
    if not stripped:
        raise TextQueryError("the text query is empty; give a few words, for example 'a dog on a sofa'")
    if len(stripped) > MAX_TEXT_CHARS:
        raise TextQueryError(
            f"the text query has {len(stripped)} characters; at most {MAX_TEXT_CHARS} are accepted"
        )
    return stripped


def create_text_ranker(model: str, weights: str | Path | None = None) -> TextRanker:
    """The text ranker for an index built with backbone ``model`` (and its ``weights`` file, if any)."""
    if model.startswith("clip:"):
        from imagerank.text.clip import ClipTextRanker

        return ClipTextRanker(model, weights=weights)
    from imagerank.text.bridge import BridgeTextRanker

    return BridgeTextRanker(model, weights=weights)
