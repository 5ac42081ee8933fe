"""Evaluate ranking methods through the product's search path: a real index, its store and `Index.search`.

`evaluate.evaluate_split` ranks arrays in memory. Here the same split is written into an index
(the training images with their labels, the candidates and queries without), each method is fitted on it as
`imagerank index` fits it, and every query is searched with `Index.search` among the unlabelled images. The
other queries are never returned, but they stay in the collection a method re-ranks with, as they would in
a user's folder and as they do on arrays, where re-rankers see every query. The two see the same labels and
the same unlabelled pool; where they differ, the difference is what users get: an approximate layout, the
cosine shortlist a method re-scores (`imagerank.index.fitted.SHORTLIST`), and the settings a method takes
for searching one query at a time (`imagerank.index.fitted.SEARCH_SETTINGS`)."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from imagerank.evaluation import metrics
from imagerank.evaluation.evaluate import EvaluationResult, scored_rankings
from imagerank.evaluation.protocols import Split
from imagerank.index.core import Index
from imagerank.store.base import ImageRecord
from imagerank.store.faiss_store import FaissStore

__all__ = ["evaluate_split_through_index"]

_VECTOR_ID = "evaluation"


def evaluate_split_through_index(
    vectors: np.ndarray,
    labels: np.ndarray,
    split: Split,
    methods: Sequence[str],
    protocol_name: str = "custom",
    k: int = 10,
    max_curve_k: int = 50,
    index_type: str = "flat",
) -> EvaluationResult:
    """Evaluate ``methods`` on ``split`` by searching an index of its vectors (see the module docstring).

    Args:
        vectors, labels: the dataset's embeddings and labels, one per file.
        split: which files train (labelled in the index), which are candidates (unlabelled) and queries.
        methods: ranking method names (`imagerank.ranking.get_method`).
        index_type: the store's layout (`imagerank.store.ann.INDEX_TYPES`).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels)
    candidate_labels, query_labels = labels[split.candidates], labels[split.queries]
    n_relevant = (query_labels[:, None] == candidate_labels[None, :]).sum(axis=1)
    depth = min(max(k, max_curve_k), len(split.candidates))
    scores = {}
    with tempfile.TemporaryDirectory(prefix="imagerank-evaluation-") as directory:
        index = _index_of_split(Path(directory), vectors, labels, split, index_type)
        position_of, query_ids = _positions(index)
        for method in methods:
            started = time.perf_counter()
            index.fit(method)
            _, ids = index.search(
                vectors[split.queries], k=depth, labels=[None], method=method, exclude=query_ids
            )
            seconds = time.perf_counter() - started
            ranked = np.where(ids >= 0, position_of[np.maximum(ids, 0)], -1)
            relevant = metrics.relevance_matrix(ranked, candidate_labels, query_labels)
            scores[method] = scored_rankings(relevant, n_relevant, k, max_curve_k, seconds, ranked)
        index.close()
    return EvaluationResult(
        protocol=f"{protocol_name} (through a {index_type} index)",
        k=k,
        n_train=len(split.train),
        n_candidates=len(split.candidates),
        n_queries=len(split.queries),
        methods=scores,
    )


def _index_of_split(
    directory: Path, vectors: np.ndarray, labels: np.ndarray, split: Split, index_type: str
) -> Index:
    """An index holding the training images with their labels, then the candidates and queries without."""
    store = FaissStore(directory, vectors.shape[1], index_type)
    rows = [(f"train/{i}", str(labels[i])) for i in split.train]
    rows += [(f"candidate/{position}", None) for position in range(len(split.candidates))]
    rows += [(f"query/{position}", None) for position in range(len(split.queries))]
    records = [
        ImageRecord(path=path, label=label, digest=path, size=0, mtime_ns=0, width=1, height=1)
        for path, label in rows
    ]
    store.upsert(records, vectors[np.concatenate([split.train, split.candidates, split.queries])])
    store.flush()
    manifest = {"vector_id": _VECTOR_ID, "dim": vectors.shape[1], "model": _VECTOR_ID}
    return Index(directory, manifest, store)


def _positions(index: Index) -> tuple[np.ndarray, set[int]]:
    """An array mapping store ids to positions among the split's candidates (-1 for the others), and the
    store ids of the queries."""
    records = index.store.all_records()
    positions = np.full(max(int(record.id or 0) for record in records) + 1, -1, dtype=np.int64)
    queries = set()
    for record in records:
        kind, position = record.path.split("/")
        if kind == "candidate":
            positions[int(record.id or 0)] = int(position)
        elif kind == "query":
            queries.add(int(record.id or 0))
    return positions, queries
