"""Evaluate ranking methods on a protocol (the embeddings it needs are cached by `embeddings`).

``evaluate_protocol(vectors, labels, protocol, methods, k)`` is the entry point: it splits the dataset
with the protocol, fits every method on the training part (candidates and queries are passed as the
unlabelled pool, never their labels), ranks all candidates for every query and scores the rankings.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from imagerank.evaluation import metrics
from imagerank.evaluation.protocols import (
    Protocol,
    Split,
)
from imagerank.ranking import Ranker, get_method

__all__ = [
    "EvaluationResult",
    "MethodScores",
    "evaluate_protocol",
    "evaluate_split",
]


@dataclass(frozen=True)
class MethodScores:
    """Per-query metric values of one method, its P@K and recall@K curves for K = 1..max, and the
    top ``max`` candidate ids of every query (indexes into the split's candidates)."""

    per_query: dict[str, np.ndarray]
    precision_curve: np.ndarray
    recall_curve: np.ndarray
    ranked_ids: np.ndarray
    seconds: float

    def interval(self, metric: str) -> tuple[float, float]:
        """Return the 95% bootstrap interval of the mean of ``metric`` over queries."""
        return metrics.bootstrap_interval(self.per_query[metric])

    def mean(self, metric: str) -> float:
        """Return the mean of ``metric`` over queries."""
        return metrics.mean_over_queries(self.per_query[metric])


@dataclass(frozen=True)
class EvaluationResult:
    """What an evaluation measured: one :class:`MethodScores` per method, in the order asked."""

    protocol: str
    k: int
    n_train: int
    n_candidates: int
    n_queries: int
    methods: dict[str, MethodScores]
    protocol_parameters: dict[str, Any] = field(default_factory=dict)
    """The protocol as :meth:`Protocol.parameters` gives it (empty for a custom split)."""

    @property
    def metric_names(self) -> list[str]:
        """Return the metric names, e.g. ``["p@10", "ap@10", "map", "recall@10", "ndcg@10"]``."""
        return metric_names(self.k)

    def table(self) -> list[dict[str, Any]]:
        """Return one row per method and metric: mean and 95% bootstrap interval over queries."""
        rows = []
        for method, scores in self.methods.items():
            for metric in self.metric_names:
                low, high = scores.interval(metric)
                rows.append(
                    {
                        "method": method,
                        "metric": metric,
                        "mean": scores.mean(metric),
                        "low": low,
                        "high": high,
                    }
                )
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict with flat keys such as ``cosine_p@10`` and ``cosine_p@10_ci95``."""
        result: dict[str, Any] = {
            "protocol": self.protocol,
            "protocol_parameters": self.protocol_parameters,
            "k": self.k,
            "n_train": self.n_train,
            "n_candidates": self.n_candidates,
            "n_queries": self.n_queries,
        }
        for row in self.table():
            key = f"{row['method']}_{row['metric']}"
            result[key] = row["mean"]
            result[f"{key}_ci95"] = [row["low"], row["high"]]
        for method, scores in self.methods.items():
            result[f"{method}_precision_curve"] = scores.precision_curve.tolist()
            result[f"{method}_recall_curve"] = scores.recall_curve.tolist()
            result[f"{method}_seconds"] = scores.seconds
        return result

    def to_json(self) -> str:
        """Return :meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2)


def metric_names(k: int) -> list[str]:
    """Return the names of the metrics an evaluation at ``k`` reports."""
    return [f"p@{k}", f"ap@{k}", "map", f"recall@{k}", f"ndcg@{k}"]


def evaluate_protocol(
    vectors: np.ndarray,
    labels: np.ndarray,
    protocol: Protocol,
    methods: Sequence[str],
    k: int = 10,
    max_curve_k: int = 50,
) -> EvaluationResult:
    """Evaluate ranking methods, by registry name, on ``protocol`` applied to a labelled dataset.

    Args:
        vectors: one embedding per dataset file, ``(n_files, dim)``.
        labels: one label per dataset file.
        protocol: how to split the dataset, e.g. :data:`imagerank.evaluation.protocols.SEED_PROTOCOL`.
        methods: names accepted by :func:`imagerank.ranking.get_method`, e.g. ``["random", "cosine"]``.
        k: the cut-off of P@K, AP@K, recall@K and nDCG@K.
        max_curve_k: the curves hold P@K and recall@K for K = 1..max_curve_k.

    Example:
        >>> result = evaluate_protocol(vectors, labels, SEED_PROTOCOL, ["random", "cosine"])
        >>> result.to_dict()["cosine_p@10"]
    """
    labels = np.asarray(labels)
    if len(vectors) != len(labels):
        raise ValueError(f"{len(vectors)} vectors but {len(labels)} labels")
    rankers = {name: get_method(name) for name in methods}
    protocol = protocol.fitted(labels)  # "auto" becomes the protocol it picks, and is reported as that
    result = evaluate_split(vectors, labels, protocol.split(labels), rankers, protocol.name, k, max_curve_k)
    return replace(result, protocol_parameters=protocol.parameters())


def evaluate_split(
    vectors: np.ndarray,
    labels: np.ndarray,
    split: Split,
    rankers: Mapping[str, Ranker],
    protocol_name: str = "custom",
    k: int = 10,
    max_curve_k: int = 50,
) -> EvaluationResult:
    """Evaluate already-built rankers on one split of a labelled dataset (see :func:`evaluate_protocol`)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels)
    candidate_labels, query_labels = labels[split.candidates], labels[split.queries]
    n_relevant = (query_labels[:, None] == candidate_labels[None, :]).sum(axis=1)
    unlabelled = vectors[np.concatenate([split.candidates, split.queries])]
    scores = {}
    for name, ranker in rankers.items():
        start = time.perf_counter()
        ranker.fit(vectors[split.train], labels[split.train], unlabelled)
        _, ids = ranker.rank(vectors[split.queries], vectors[split.candidates])
        seconds = time.perf_counter() - start
        relevant = metrics.relevance_matrix(ids, candidate_labels, query_labels)
        scores[name] = scored_rankings(relevant, n_relevant, k, max_curve_k, seconds, ids[:, :max_curve_k])
    return EvaluationResult(
        protocol=protocol_name,
        k=k,
        n_train=len(split.train),
        n_candidates=len(split.candidates),
        n_queries=len(split.queries),
        methods=scores,
    )


def scored_rankings(
    relevant: np.ndarray,
    n_relevant: np.ndarray,
    k: int,
    max_curve_k: int,
    seconds: float,
    ranked_ids: np.ndarray,
) -> MethodScores:
    """Every metric of one method's rankings, from its relevance matrix (queries x ranks)."""
    per_query = dict(
        zip(
            metric_names(k),
            [
                metrics.precision_at_k(relevant, k),
                metrics.ap_at_k(relevant, k),
                metrics.average_precision(relevant, n_relevant),
                metrics.recall_at_k(relevant, n_relevant, k),
                metrics.ndcg_at_k(relevant, n_relevant, k),
            ],
            strict=True,
        )
    )
    return MethodScores(
        per_query=per_query,
        precision_curve=metrics.precision_curve(relevant, max_curve_k),
        recall_curve=metrics.recall_curve(relevant, n_relevant, max_curve_k),
        ranked_ids=ranked_ids,
        seconds=seconds,
    )
