"""What a text ranker is (`TextRanker`) and what a text query may be (`checked_text`, `TextQueryError`)."""

from __future__ import annotations

from collections.abc import Sequence
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
