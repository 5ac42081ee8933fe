"""Graph-based semi-supervised ranking: spread the training labels over a kNN graph.

The graph joins the labelled training vectors and the unlabelled pool (in an evaluation: the
candidates and queries, without their labels). Label spreading (Zhou et al., 2004) gives every node a
distribution over the training labels; queries and candidates are then compared by those
distributions, gated towards plain cosine for queries no training label reaches.
"""

from __future__ import annotations

from typing import Self

import faiss
import numpy as np
import scipy.sparse as sp

from imagerank.ranking._base import Ranker, check_fitted, normalized
from imagerank.ranking.learned import class_indices, known_class_gate, principal_subspace


def knn_graph(vectors: np.ndarray, n_neighbours: int) -> sp.csr_matrix:
    """Return the symmetric, degree-normalised kNN affinity ``D^-1/2 W D^-1/2`` of unit vectors."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    similarities, ids = index.search(vectors, n_neighbours + 1)
    similarities, ids = similarities[:, 1:], ids[:, 1:]  # each vector is its own nearest neighbour
    rows = np.repeat(np.arange(len(vectors)), n_neighbours)
    weights = np.maximum(similarities.ravel(), 0.0).astype(np.float64) ** 3
    affinity = sp.csr_matrix((weights, (rows, ids.ravel())), shape=(len(vectors), len(vectors)))
    affinity = affinity.maximum(affinity.T)
    degree = np.asarray(affinity.sum(axis=1)).ravel()
    scale = sp.diags(1.0 / np.sqrt(np.maximum(degree, np.finfo(np.float64).tiny)))
    return sp.csr_matrix(scale @ affinity @ scale)


def spread_labels(graph: sp.csr_matrix, seeds: np.ndarray, alpha: float, n_iterations: int) -> np.ndarray:
    """Return ``F`` with ``F = alpha * graph @ F + (1 - alpha) * seeds`` iterated ``n_iterations`` times."""
    spread = seeds.copy()
    for _ in range(n_iterations):
        spread = alpha * (graph @ spread) + (1 - alpha) * seeds
    return spread


class LabelSpreadingRanker(Ranker):
    """Compare queries and candidates by training labels spread over a kNN graph.

    ``fit`` builds the graph over training and unlabelled vectors and spreads the training labels.
    A vector to rank takes the mean spread labels of its ``n_neighbours`` nearest graph nodes
    (itself, when it was in the pool). The spread labels, read as posteriors, drive the same novelty
    gate as :class:`~imagerank.ranking.ProbeRanker`: queries of a category no training label
    reaches fall back to cosine.

    Args:
        n_neighbours: neighbours per node in the graph.
        n_components: the graph joins vectors by cosine within this many principal dimensions.
        alpha: how far labels spread (0: not at all, towards 1: further).
        novelty_threshold: confidence at which the gate is half open; 0 trusts every query's class.
        novelty_slope: how sharply the gate opens around the threshold.
    """

    def __init__(
        self,
        n_neighbours: int = 10,
        n_components: int = 256,
        alpha: float = 0.9,
        novelty_threshold: float = 0.5,
        novelty_slope: float = 40.0,
    ) -> None:
        self.n_neighbours = n_neighbours
        self.n_components = n_components
        self.alpha = alpha
        self.novelty_threshold = novelty_threshold
        self.novelty_slope = novelty_slope

    def fit(
        self,
        train_vectors: np.ndarray,
        train_labels: np.ndarray,
        unlabelled_vectors: np.ndarray | None = None,
    ) -> Self:
        """Build the graph and spread the training labels over it."""
        classes, index = class_indices(train_labels)
        pool = [train_vectors] if unlabelled_vectors is None else [train_vectors, unlabelled_vectors]
        pool_vectors = np.concatenate(pool)
        self.mean_, self.basis_ = principal_subspace(pool_vectors, self.n_components)
        nodes = self._projected(pool_vectors)
        seeds = np.zeros((len(nodes), classes.size))
        seeds[np.arange(len(index)), index] = 1.0
        self.node_index_ = faiss.IndexFlatIP(nodes.shape[1])
        self.node_index_.add(nodes)
        graph = knn_graph(nodes, min(self.n_neighbours, len(nodes) - 1))
        self.node_labels_ = spread_labels(graph, seeds, self.alpha, _ITERATIONS)
        return self

    def _projected(self, vectors: np.ndarray) -> np.ndarray:
        return normalized((normalized(vectors) - self.mean_) @ self.basis_)

    def label_distributions(self, vectors: np.ndarray) -> np.ndarray:
        """Return the spread labels of each vector's nearest graph nodes, as posteriors (rows sum to 1)."""
        check_fitted(self, "node_labels_")
        n_nearest = min(self.n_neighbours, self.node_index_.ntotal)
        _, ids = self.node_index_.search(self._projected(vectors), n_nearest)
        spread = self.node_labels_[ids].mean(axis=1) + _TINY
        return spread / spread.sum(axis=1, keepdims=True)

    def score(self, query_vectors: np.ndarray, candidate_vectors: np.ndarray) -> np.ndarray:
        """Return ``gate * spread-label cosine + (1 - gate) * cosine``."""
        query_labels = self.label_distributions(query_vectors)
        candidate_labels = self.label_distributions(candidate_vectors)
        spread = normalized(query_labels) @ normalized(candidate_labels).T
        plain = normalized(query_vectors) @ normalized(candidate_vectors).T
        gate = known_class_gate(
            np.log(query_labels),
            np.log(candidate_labels),
            plain,
            self.novelty_threshold,
            self.novelty_slope,
        )
        return gate * spread + (1 - gate) * plain


_ITERATIONS = 20
_TINY = 1e-9
