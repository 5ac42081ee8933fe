"""Re-ranking: refine any ranker's scores with the structure of the candidate pool itself.

Each re-ranker wraps a base ranker (cosine by default) and works on its score matrices, so the same
code re-ranks plain cosine, a learned projection or the probe's ``P(same label)``. None of them uses
labels; they are unsupervised and transductive over the queries and candidates they are given.
"""

from __future__ import annotations

import copy
from typing import Self

import numpy as np
import scipy.sparse as sp

from imagerank.ranking._base import (
    Ranker,
    check_fitted,
    indicator_matrix,
    knn_weights,
    ranked_nearest_ids,
)
from imagerank.ranking.baselines import CosineRanker


class Reranker(Ranker):
    """Fits a copy of ``base`` (cosine when ``None``) and re-ranks its scores."""

    base: Ranker | None

    def fit(
        self,
        train_vectors: np.ndarray,
        train_labels: np.ndarray,
        unlabelled_vectors: np.ndarray | None = None,
    ) -> Self:
        """Fit the base ranker; re-ranking itself learns nothing."""
        base = CosineRanker() if self.base is None else copy.deepcopy(self.base)
        self.base_ = base.fit(train_vectors, train_labels, unlabelled_vectors)
        return self

    def _base_scores(self, vectors_a: np.ndarray, vectors_b: np.ndarray) -> np.ndarray:
        check_fitted(self, "base_")
        return self.base_.score(vectors_a, vectors_b)


class QueryExpansion(Reranker):
    """Alpha query expansion: the query plus its top ``n_neighbours`` candidates, weighted by score ** alpha.

    In score space ``s'(q, c) = s(q, c) + sum_j s(q, j) ** alpha * s(j, c)`` over the query's best
    candidates ``j``; with cosine this is exactly cosine to the expanded query (Radenovic et al., 2018).
    """

    def __init__(self, base: Ranker | None = None, n_neighbours: int = 5, alpha: float = 3.0) -> None:
        self.base = base
        self.n_neighbours = n_neighbours
        self.alpha = alpha

    def score(self, query_vectors: np.ndarray, candidate_vectors: np.ndarray) -> np.ndarray:
        """Return the expanded queries' scores."""
        scores = self._base_scores(query_vectors, candidate_vectors)
        if scores.shape[1] == 0:
            return scores
        among_candidates = self._base_scores(candidate_vectors, candidate_vectors)
        expansion = knn_weights(scores, self.n_neighbours, self.alpha)
        return scores + expansion @ among_candidates


class DatabaseAugmentation(Reranker):
    """Database-side augmentation: each candidate becomes itself plus its nearest candidates.

    In score space ``s'(q, c) = sum_j w(c, j) s(q, j) / |sum_j w(c, j) x_j|`` over the ``n_neighbours``
    best candidates ``j`` of ``c`` (``c`` itself first), with ``w = s(c, j) ** alpha``; with cosine
    this is cosine to the re-normalised augmented candidate vectors (Arandjelovic & Zisserman, 2012).
    """

    def __init__(self, base: Ranker | None = None, n_neighbours: int = 5, alpha: float = 3.0) -> None:
        self.base = base
        self.n_neighbours = n_neighbours
        self.alpha = alpha

    def score(self, query_vectors: np.ndarray, candidate_vectors: np.ndarray) -> np.ndarray:
        """Return the scores against the augmented candidates."""
        scores = self._base_scores(query_vectors, candidate_vectors)
        if scores.shape[1] == 0:
            return scores
        among_candidates = self._base_scores(candidate_vectors, candidate_vectors)
        return augmented_scores(scores, among_candidates, self.n_neighbours, self.alpha)


class KReciprocal(Reranker):
    """k-reciprocal re-ranking (Zhong et al., 2017) without the reciprocal-set expansion step.

    Every query and candidate is encoded by its k-reciprocal neighbours (``j`` is among its
    ``k1`` nearest and it is among ``j``'s), weighted ``exp(score)`` and averaged over its ``k2``
    nearest neighbours. The final score mixes the Jaccard overlap of the encodings with the base
    score: ``-((1 - original_weight) * jaccard_distance + original_weight * (1 - score))``.
    """

    def __init__(
        self, base: Ranker | None = None, k1: int = 20, k2: int = 6, original_weight: float = 0.3
    ) -> None:
        self.base = base
        self.k1 = k1
        self.k2 = k2
        self.original_weight = original_weight

    def score(self, query_vectors: np.ndarray, candidate_vectors: np.ndarray) -> np.ndarray:
        """Return minus the mixed Jaccard / base distance of every query/candidate pair."""
        everything = np.concatenate([query_vectors, candidate_vectors])
        scores = self._base_scores(everything, everything)
        return kreciprocal_scores(scores, len(query_vectors), self.k1, self.k2, self.original_weight)


def augmented_scores(
    scores: np.ndarray, among_candidates: np.ndarray, n_neighbours: int = 5, alpha: float = 3.0
) -> np.ndarray:
    """Return :class:`DatabaseAugmentation`'s scores from the base's query and candidate score matrices."""
    augmentation = knn_weights(among_candidates, n_neighbours, alpha)
    # the length of each augmented candidate, sqrt(w^T S w), as when re-normalising its vector
    squared_norms = np.asarray(augmentation.multiply(augmentation @ among_candidates).sum(axis=1))
    augmented = np.asarray((augmentation @ scores.T).T)
    return augmented / np.sqrt(np.maximum(squared_norms.ravel(), np.finfo(np.float64).tiny))


def kreciprocal_scores(
    scores: np.ndarray, n_queries: int, k1: int = 20, k2: int = 6, original_weight: float = 0.3
) -> np.ndarray:
    """Return :class:`KReciprocal`'s query/candidate scores from the base's scores among queries + candidates.

    ``scores`` is square over the queries (first ``n_queries`` rows and columns) then the candidates.
    """
    base = scores[:n_queries, n_queries:]
    if base.shape[1] == 0:
        return base
    encodings = _reciprocal_encodings(scores, k1, k2)
    overlap = _min_overlap(encodings[:n_queries], encodings[n_queries:])
    jaccard_distance = 1.0 - overlap / (2.0 - overlap)
    return -((1 - original_weight) * jaccard_distance + original_weight * (1.0 - base))


def _reciprocal_encodings(scores: np.ndarray, k1: int, k2: int) -> sp.csr_matrix:
    itself_first = np.array(scores, dtype=np.float64)
    itself_first[np.diag_indices(len(scores))] += np.abs(scores).max() + 1.0
    # one selection of each row's nearest, ranked, serves both k1 and k2
    ranked = ranked_nearest_ids(itself_first, max(k1 + 1, k2))
    nearest = indicator_matrix(ranked[:, : k1 + 1], scores.shape[1])
    reciprocal = nearest.multiply(nearest.T).tocsr()
    rows, cols = reciprocal.nonzero()
    weights = sp.csr_matrix((np.exp(scores[rows, cols]), (rows, cols)), shape=scores.shape)
    encodings = _rows_averaged(weights)
    if k2 > 1:
        encodings = _rows_averaged(indicator_matrix(ranked[:, :k2], scores.shape[1])) @ encodings
    return sp.csr_matrix(encodings)


def _rows_averaged(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Return ``matrix`` with every row scaled to sum to 1."""
    scaled = sp.csr_matrix(matrix, copy=True)
    scaled.data *= np.repeat(1.0 / np.asarray(scaled.sum(axis=1)).ravel(), np.diff(scaled.indptr))
    return scaled


def _min_overlap(rows_a: sp.csr_matrix, rows_b: sp.csr_matrix) -> np.ndarray:
    """Return ``sum_j min(a[i, j], b[k, j])`` for every pair of rows, joining on shared columns."""
    cols_a, cols_b = sp.csc_matrix(rows_a), sp.csc_matrix(rows_b)
    cols_a.sort_indices()
    cols_b.sort_indices()
    count_a, count_b = np.diff(cols_a.indptr), np.diff(cols_b.indptr)
    pairs_per_column = count_a * count_b
    column = np.repeat(np.arange(len(pairs_per_column)), pairs_per_column)
    position = np.arange(pairs_per_column.sum()) - np.repeat(
        np.cumsum(pairs_per_column) - pairs_per_column, pairs_per_column
    )
    entry_a = cols_a.indptr[column] + position // count_b[column]
    entry_b = cols_b.indptr[column] + position % count_b[column]
    n_a, n_b = rows_a.shape[0], rows_b.shape[0]
    flat = cols_a.indices[entry_a].astype(np.int64) * n_b + cols_b.indices[entry_b]
    minima = np.minimum(cols_a.data[entry_a], cols_b.data[entry_b])
    return np.bincount(flat, weights=minima, minlength=n_a * n_b).reshape(n_a, n_b)
