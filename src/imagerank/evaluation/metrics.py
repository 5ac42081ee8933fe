"""Retrieval metrics as pure functions on a relevance matrix.

Every function takes ``relevant``, a boolean matrix of shape ``(n_queries, n_ranked)`` whose row ``q``
says, in rank order (best first), whether each returned result is relevant to query ``q``. Functions that
need to know how many relevant items exist in the whole collection (recall, AP, nDCG) also take
``n_relevant``, one count per query, because a truncated ranking cannot tell.

Per-query functions return one value per query; average them with :func:`mean_over_queries` and put an
interval on the mean with :func:`bootstrap_interval`. A ranking shorter than ``k`` counts its missing
positions as not relevant. A query with no relevant item in the collection scores 0 on every metric
(the convention of ``sklearn.metrics.average_precision_score`` and trec_eval).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "ap_at_k",
    "average_precision",
    "bootstrap_interval",
    "mean_over_queries",
    "ndcg_at_k",
    "precision_at_k",
    "precision_curve",
    "recall_at_k",
    "recall_curve",
    "relevance_matrix",
]


def relevance_matrix(
    ranked_ids: np.ndarray, candidate_labels: np.ndarray, query_labels: np.ndarray
) -> np.ndarray:
    """Return ``relevant[q, r]``: whether the ``r``-th result of query ``q`` shares the query's label.

    ``ranked_ids`` index into ``candidate_labels``; ids of ``-1`` (FAISS's "no result") are not relevant.
    """
    ranked_ids = np.asarray(ranked_ids)
    labels = np.asarray(candidate_labels)[np.where(ranked_ids < 0, 0, ranked_ids)]
    return (labels == np.asarray(query_labels)[:, None]) & (ranked_ids >= 0)


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")


def _hits_at_each_rank(relevant: np.ndarray, k: int) -> np.ndarray:
    """Return the relevance matrix cut or zero-padded to exactly ``k`` columns, as floats."""
    relevant = np.asarray(relevant, dtype=bool)
    if relevant.ndim != 2:
        raise ValueError(f"relevant must be a 2-D (queries x ranks) matrix, got shape {relevant.shape}")
    cut = relevant[:, :k].astype(np.float64)
    if cut.shape[1] < k:
        cut = np.pad(cut, ((0, 0), (0, k - cut.shape[1])))
    return cut


def _precision_at_each_rank(hits: np.ndarray) -> np.ndarray:
    """Return P@i for every rank i = 1..n of a float hit matrix."""
    return np.cumsum(hits, axis=1) / np.arange(1, hits.shape[1] + 1)


def _safe_divide(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Divide, giving 0 where the denominator is 0 (a query with no relevant item)."""
    denominator = np.asarray(denominator, dtype=np.float64)
    return np.divide(
        numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0
    )


def precision_at_k(relevant: np.ndarray, k: int) -> np.ndarray:
    """Return P@K per query: the number of relevant results in the top ``k``, divided by ``k``."""
    _check_k(k)
    return _hits_at_each_rank(relevant, k).sum(axis=1) / k


def ap_at_k(relevant: np.ndarray, k: int) -> np.ndarray:
    """Return AP@K per query as the reference protocol defines it.

    The sum of P@i over the ranks ``i <= k`` that hold a relevant result, divided by ``k`` (not by the
    number of relevant results, so a query with fewer than ``k`` relevant candidates cannot reach 1).
    """
    _check_k(k)
    hits = _hits_at_each_rank(relevant, k)
    return (_precision_at_each_rank(hits) * hits).sum(axis=1) / k


def average_precision(relevant: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """Return standard average precision per query over the whole ranking given.

    The sum of P@i over the ranks holding a relevant result, divided by ``n_relevant`` (the number of
    relevant items in the collection); relevant items missing from a truncated ranking contribute 0.
    """
    hits = _hits_at_each_rank(relevant, max(np.shape(relevant)[1], 1))
    return _safe_divide((_precision_at_each_rank(hits) * hits).sum(axis=1), n_relevant)


def recall_at_k(relevant: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Return recall@K per query: relevant results in the top ``k`` over all relevant items."""
    _check_k(k)
    return _safe_divide(_hits_at_each_rank(relevant, k).sum(axis=1), n_relevant)


def ndcg_at_k(relevant: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Return nDCG@K per query with binary gains and the ``1 / log2(rank + 1)`` discount."""
    _check_k(k)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = _hits_at_each_rank(relevant, k) @ discounts
    ideal_dcg = np.concatenate([[0.0], np.cumsum(discounts)])
    return _safe_divide(dcg, ideal_dcg[np.minimum(np.asarray(n_relevant), k)])


def precision_curve(relevant: np.ndarray, max_k: int) -> np.ndarray:
    """Return mean P@K over queries for K = 1..``max_k`` (entry ``K - 1`` holds P@K)."""
    _check_k(max_k)
    return _precision_at_each_rank(_hits_at_each_rank(relevant, max_k)).mean(axis=0)


def recall_curve(relevant: np.ndarray, n_relevant: np.ndarray, max_k: int) -> np.ndarray:
    """Return mean recall@K over queries for K = 1..``max_k`` (entry ``K - 1`` holds recall@K)."""
    _check_k(max_k)
    found = np.cumsum(_hits_at_each_rank(relevant, max_k), axis=1)
    return _safe_divide(found, np.asarray(n_relevant)[:, None]).mean(axis=0)


def mean_over_queries(values: np.ndarray) -> float:
    """Return the mean of per-query values; raises on an empty set of queries instead of giving NaN."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("cannot average a metric over zero queries")
    return float(values.mean())


def bootstrap_interval(
    values: np.ndarray, confidence: float = 0.95, n_resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Return a percentile bootstrap interval for the mean of per-query values.

    Queries are resampled with replacement ``n_resamples`` times from a generator seeded with ``seed``,
    so the same values always give the same interval.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        raise ValueError("cannot bootstrap a metric over zero queries")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(n_resamples, values.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(low), float(high)
