"""Search with an index: query vectors from uploads or ids, relevance feedback, words; one page of results.

Pure functions over an `Index`; the routes only translate HTTP to these calls and back.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import faiss
import numpy as np
from PIL import Image

from imagerank.index.core import Index
from imagerank.ranking import rocchio_query
from imagerank.server.errors import ImageNotFoundError
from imagerank.store.base import ImageRecord


@dataclass(frozen=True)
class Hit:
    rank: int
    score: float
    record: ImageRecord


@dataclass(frozen=True)
class Page:
    hits: list[Hit]
    has_more: bool


def vectors_of(index: Index, ids: Sequence[int]) -> np.ndarray:
    """Stored vectors of indexed images, (len(ids), dim). Raises ImageNotFoundError for an unknown id."""
    if not ids:
        return np.zeros((0, index.store.dim), dtype=np.float32)
    try:
        return index.store.vectors(list(ids))
    except KeyError:
        unknown = next(i for i in ids if not _is_indexed(index, i))
        raise ImageNotFoundError(unknown) from None


def embed_image(index: Index, image: Image.Image) -> np.ndarray:
    """The (1, dim) vector of a decoded query image."""
    return index.embedder.encode([image])


def record_of(index: Index, image_id: int) -> ImageRecord:
    try:
        return index.store.records([image_id])[0]
    except KeyError:
        raise ImageNotFoundError(image_id) from None


def refined_query(
    index: Index, query: np.ndarray, relevant: Sequence[int], not_relevant: Sequence[int]
) -> np.ndarray:
    """The query moved by relevance feedback with Rocchio's method (unchanged without feedback ids).

    `imagerank.ranking.refine` scores a candidate matrix held in memory; here only its query update is
    used, and the refined query is then searched in the index like any other, so label filters and
    paging work the same with and without feedback.
    """
    if not relevant and not not_relevant:
        return query
    feedback = vectors_of(index, [*relevant, *not_relevant])
    marked_relevant = range(len(relevant))
    marked_not_relevant = range(len(relevant), len(feedback))
    return rocchio_query(query, feedback, marked_relevant, marked_not_relevant)


def ranked_page(
    index: Index,
    query: np.ndarray,
    k: int,
    offset: int,
    labels: Sequence[str] = (),
    exclude: Collection[int] = (),
    threads: int = 1,
    method: str | None = None,
) -> Page:
    """Results offset+1 .. offset+k of the ranking for `query`, leaving out the `exclude` ids.

    One more result than the page is fetched to tell whether a next page exists. `threads` is the number
    of OpenMP threads FAISS may use; it is set for the calling thread only (OpenMP settings are per
    thread), so it is set here, in the request's worker thread.
    """
    faiss.omp_set_num_threads(threads)
    wanted = offset + k + 1
    scores, ids = index.search(
        query,
        k=min(wanted, max(len(index), 1)),
        labels=list(labels) or None,
        method=method,
        exclude=set(exclude),
    )
    return _page(index, scores, ids, k, offset)


def ranked_text_page(
    index: Index,
    text: str,
    k: int,
    offset: int,
    labels: Sequence[str] = (),
    relevant: Sequence[int] = (),
    not_relevant: Sequence[int] = (),
) -> Page:
    """Results offset+1 .. offset+k of the ranking for the words `text` (`Index.search_text`), refined by
    the feedback ids. Raises ImageNotFoundError for a feedback id that is not indexed."""
    vectors_of(index, [*relevant, *not_relevant])  # an unknown id is a 404 naming it, as for image queries
    scores, ids = index.search_text(
        text, k=offset + k + 1, labels=list(labels) or None, relevant=relevant, not_relevant=not_relevant
    )
    return _page(index, scores, ids, k, offset)


def _page(index: Index, scores: np.ndarray, ids: np.ndarray, k: int, offset: int) -> Page:
    """The page offset+1 .. offset+k of a (1, n) ranking (one more than the page tells if a next exists)."""
    ranked = [
        (float(score), int(image_id))
        for score, image_id in zip(scores[0], ids[0], strict=True)
        if image_id >= 0 and np.isfinite(score)
    ]
    window = ranked[offset : offset + k]
    records = index.store.records([image_id for _, image_id in window])
    hits = [
        Hit(rank=offset + position + 1, score=score, record=record)
        for position, ((score, _), record) in enumerate(zip(window, records, strict=True))
    ]
    return Page(hits=hits, has_more=len(ranked) > offset + k)


def _is_indexed(index: Index, image_id: int) -> bool:
    try:
        index.store.vectors([image_id])
    except KeyError:
        return False
    return True
