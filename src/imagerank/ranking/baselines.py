"""The reference points every other method is measured against: random order and cosine similarity."""

from __future__ import annotations

import numpy as np

from imagerank.ranking._base import Ranker, normalized


class RandomRanker(Ranker):
    """Rank candidates in a random order, reproducing the published random baseline exactly.

    The reference draws, for each query in turn and from one ``RandomState(seed)``,
    ``rng.choice(candidate_labels, k, replace=False)``. NumPy implements that draw as
    ``rng.permutation(n_candidates)[:k]``, so ranking query ``q`` by the ``q``-th permutation gives the
    same top ``k`` labels for any ``k``.
    """

    def __init__(self, seed: int = 2021) -> None:
        self.seed = seed

    def score(self, query_vectors: np.ndarray, candidate_vectors: np.ndarray) -> np.ndarray:
        """Return minus the position of each candidate in the query's permutation."""
        rng = np.random.RandomState(self.seed)
        n_queries, n_candidates = len(query_vectors), len(candidate_vectors)
        permutations = [rng.permutation(n_candidates) for _ in range(n_queries)]
        order = np.array(permutations, dtype=np.intp).reshape(n_queries, n_candidates)
        scores = np.empty((n_queries, n_candidates), dtype=np.float32)
        positions = np.broadcast_to(-np.arange(n_candidates, dtype=np.float32), order.shape)
        np.put_along_axis(scores, order, positions, axis=1)
        return scores


class CosineRanker(Ranker):
    """Rank candidates by cosine similarity to the query: the off-the-shelf baseline."""

    def score(self, query_vectors: np.ndarray, candidate_vectors: np.ndarray) -> np.ndarray:
        """Return the cosine similarity of every query/candidate pair."""
        return normalized(query_vectors) @ normalized(candidate_vectors).T
