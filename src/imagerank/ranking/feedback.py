"""Relevance feedback: re-rank after the user marks some results relevant or not relevant."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imagerank.ranking._base import normalized, top_k


def rocchio_query(
    query_vector: np.ndarray,
    candidate_vectors: np.ndarray,
    relevant_ids: Sequence[int],
    nonrelevant_ids: Sequence[int],
    alpha: float = 1.0,
    beta: float = 0.75,
    gamma: float = 0.15,
) -> np.ndarray:
    """Return Rocchio's refined query as a ``(1, dim)`` unit vector.

    ``alpha * query + beta * mean(relevant) - gamma * mean(not relevant)`` on unit vectors; an empty
    id list drops its term. Ids index ``candidate_vectors``.
    """
    query = normalized(np.asarray(query_vector).reshape(1, -1))
    candidates = normalized(candidate_vectors)
    refined = alpha * query
    if len(relevant_ids):
        refined = refined + beta * candidates[np.asarray(relevant_ids)].mean(axis=0, keepdims=True)
    if len(nonrelevant_ids):
        refined = refined - gamma * candidates[np.asarray(nonrelevant_ids)].mean(axis=0, keepdims=True)
    return normalized(refined)


def refine(
    query_vector: np.ndarray,
    candidate_vectors: np.ndarray,
    relevant_ids: Sequence[int],
    nonrelevant_ids: Sequence[int],
    k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return FAISS-style ``(scores, ids)`` of the candidates for the Rocchio-refined query.

    Candidates marked not relevant are ranked last (score ``-inf``); those marked relevant stay in
    the ranking, normally at the top.

    Example:
        >>> scores, ids = refine(query, vectors, relevant_ids=[4, 9], nonrelevant_ids=[2])
    """
    _check_ids(relevant_ids, nonrelevant_ids, len(candidate_vectors))
    refined = rocchio_query(query_vector, candidate_vectors, relevant_ids, nonrelevant_ids)
    scores = refined @ normalized(candidate_vectors).T
    scores[0, np.asarray(nonrelevant_ids, dtype=np.intp)] = -np.inf
    best_scores, ids = top_k(scores, k)
    return best_scores[0], ids[0]


def _check_ids(relevant_ids: Sequence[int], nonrelevant_ids: Sequence[int], n_candidates: int) -> None:
    ids = np.asarray([*relevant_ids, *nonrelevant_ids], dtype=np.intp)
    if ids.size and (ids.min() < 0 or ids.max() >= n_candidates):
        raise ValueError(f"feedback ids must index the {n_candidates} candidates, got {ids.tolist()}")
    both = set(relevant_ids) & set(nonrelevant_ids)
    if both:
        raise ValueError(f"ids {sorted(both)} are marked both relevant and not relevant")
