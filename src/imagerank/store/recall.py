"""Label-filtered search, exact re-ranking of approximate results, and the recall@10 an approximate layout
is measured at on a sample of the store's own vectors (the numbers `FaissStore.describe` reports).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import faiss
import numpy as np

from imagerank.store.ann import RECALL_K, RECALL_QUERIES, RERANK_LIMIT, recall_at_k, search_parameters
from imagerank.store.base import empty_results
from imagerank.store.rows import _chunk_arrays

_RECALL_STALE_GROWTH = 1.25
_EXACT_SUBSET_MAX = 4096
"""Label-filtered searches over at most this many images of an approximate layout are exact."""


class RecallAndFilters:
    """`FaissStore` methods for filtered and re-ranked search and for measuring recall."""

    def _search_labelled(
        self, index: faiss.Index, queries: np.ndarray, k: int, labels: Sequence[str | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search among the images with these labels; exactly, from the stored vectors, when they are few
        (a graph search restricted to a small subset misses much of it)."""
        ids = self._ids_with_labels(labels)
        if not len(ids):
            return empty_results(len(queries), k)
        if self._plan.approximate and len(ids) <= _EXACT_SUBSET_MAX:
            return self._reranked(queries, np.broadcast_to(ids, (len(queries), len(ids))), k)
        return self._search_selected(index, queries, k, faiss.IDSelectorBatch(ids))

    def _search_selected(
        self, index: faiss.Index, queries: np.ndarray, k: int, selector: faiss.IDSelector | None
    ) -> tuple[np.ndarray, np.ndarray]:
        params = search_parameters(self._plan, index, selector)
        scores, ids = index.search(queries, shortlist_length(k, self._plan.rerank), params=params)
        if self._plan.rerank > 1:
            return self._reranked(queries, ids, k)
        return scores, ids

    def _reranked(self, queries: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top k of each query's shortlist `ids`, re-scored with the exact stored vectors."""
        found = np.unique(ids[ids >= 0])
        if not len(found):
            return empty_results(len(queries), k)
        exact = queries @ self.vectors(found).T
        positions = np.searchsorted(found, np.where(ids >= 0, ids, found[0]))
        scores = np.take_along_axis(exact, positions, axis=1)
        scores[ids < 0] = np.finfo(np.float32).min
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(scores, order, axis=1)
        top_ids = np.where(top_scores > np.finfo(np.float32).min, np.take_along_axis(ids, order, axis=1), -1)
        padding = k - order.shape[1]
        if padding > 0:
            empty_scores, empty_ids = empty_results(len(queries), padding)
            return np.hstack([top_scores, empty_scores]), np.hstack([top_ids, empty_ids])
        return top_scores.astype(np.float32), top_ids

    def _measure_recall(self) -> dict:
        """Recall@10 of the FAISS copy against exact search, on a sample of the stored vectors as queries."""
        ids = self._all_ids()
        queries = self.vectors(_sample(ids, RECALL_QUERIES))
        exact = faiss.ResultHeap(len(queries), RECALL_K, keep_max=True)
        rows = self._db.execute("SELECT id, vector FROM images ORDER BY id")
        while chunk := rows.fetchmany(4096):
            chunk_ids, vectors = _chunk_arrays(chunk, self.dim)
            scores, positions = faiss.knn(
                queries, vectors, min(RECALL_K, len(vectors)), faiss.METRIC_INNER_PRODUCT
            )
            exact.add_result(
                _padded(scores, RECALL_K, np.finfo(np.float32).min),
                _padded(chunk_ids[positions], RECALL_K, -1),
            )
        exact.finalize()
        _, approximate = self.search(queries, RECALL_K)
        record = {
            "recall_at_10": round(recall_at_k(approximate, exact.I), 4),
            "queries": len(queries),
            "vectors": len(ids),
            "type": self._plan.type,
        }
        self._db.execute(
            "INSERT OR REPLACE INTO settings VALUES ('recall', ?)", (json.dumps(record, sort_keys=True),)
        )
        return record

    def _recall_record(self) -> dict:
        row = self._db.execute("SELECT value FROM settings WHERE key = 'recall'").fetchone()
        return json.loads(row[0]) if row else {}


def _sample(ids: np.ndarray, size: int) -> np.ndarray:
    """A reproducible random sample of at most `size` ids, sorted."""
    if len(ids) <= size:
        return ids
    return np.sort(np.random.default_rng(0).choice(ids, size, replace=False))


def _padded(array: np.ndarray, width: int, fill: float) -> np.ndarray:
    if array.shape[1] == width:
        return np.ascontiguousarray(array)
    padding = np.full((array.shape[0], width - array.shape[1]), fill, dtype=array.dtype)
    return np.hstack([array, padding])


def shortlist_length(k: int, rerank: int) -> int:
    """How many approximate results a search re-scores exactly for the top ``k``: ``rerank`` times ``k``,
    but no more than `RERANK_LIMIT` unless ``k`` itself is larger."""
    return max(k, min(k * rerank, RERANK_LIMIT))
