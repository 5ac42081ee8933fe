"""Evaluate ranking methods on a protocol, and cache the embeddings an evaluation needs.

``evaluate_protocol(vectors, labels, protocol, methods, k)`` is the entry point: it splits the dataset
with the protocol, fits every method on the training part (candidates and queries are passed as the
unlabelled pool, never their labels), ranks all candidates for every query and scores the rankings.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np

from imagerank.embedding.decoding import file_digest
from imagerank.embedding.embedder import cache_dir
from imagerank.embedding.factory import create_embedder
from imagerank.embedding.models import DEFAULT_MODEL
from imagerank.errors import BadImageError, ImageRankError
from imagerank.evaluation import metrics
from imagerank.evaluation.protocols import (
    Protocol,
    Split,
    drop_small_labels,
    list_labelled_images,
    scan_labelled_images,
)
from imagerank.ranking import Ranker, get_method, normalized

__all__ = [
    "EvaluationResult",
    "LabelledEmbeddings",
    "MethodScores",
    "cached_embeddings",
    "dataset_embeddings",
    "embed_labelled_folder",
    "evaluate_protocol",
    "evaluate_split",
    "joined_embeddings",
    "labelled_images",
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


class Embedder(TypingProtocol):
    """What :func:`cached_embeddings` needs from an embedder (see ``imagerank.embedding.embedder``)."""

    spec: Any

    def iter_encode_files(
        self, paths: Sequence[str | Path], batch_size: int = ..., show_progress_bar: bool = ...
    ) -> Iterator[Any]: ...


def cached_embeddings(
    paths: Sequence[str | Path],
    embedder: Embedder,
    cache_dir: str | Path,
    show_progress_bar: bool = False,
) -> np.ndarray:
    """Return one vector per path, embedding only files whose content the cache has not seen.

    The cache is one ``.npz`` per backbone and weights (``<model>-<weights id>.npz`` under
    ``cache_dir``) mapping file-content digests to vectors, so renamed or moved files are not
    re-embedded and edited files are. Raises ``BadImageError`` on a file that cannot be embedded (the
    others are cached first); :func:`embed_labelled_folder` skips such files instead.
    """
    vectors, skipped = _cached_embeddings_skipping_bad(paths, embedder, cache_dir, show_progress_bar)
    if skipped:
        raise skipped[0]
    return vectors


def _cached_embeddings_skipping_bad(
    paths: Sequence[str | Path], embedder: Embedder, cache_dir: str | Path, show_progress_bar: bool
) -> tuple[np.ndarray, list[BadImageError]]:
    """Return the vectors of the paths that could be embedded, in order, and the errors of the others."""
    cache_file = Path(cache_dir) / f"{_safe_name(embedder.spec.vector_id())}.npz"
    skipped: list[BadImageError] = []
    digests = []
    for path in paths:
        try:
            digests.append(file_digest(path))
        except OSError as error:
            skipped.append(BadImageError(path, f"cannot read: {error.strerror or error}"))
            digests.append("")
    digest_array = np.array(digests)
    cached = _read_cache(cache_file, embedder.spec.dim)
    missing = np.unique(digest_array[~np.isin(digest_array, [*cached, ""])])
    reasons: dict[str, str] = {}
    if missing.size:
        path_of = dict(zip(digests, paths, strict=True))  # any path of a digest has its content
        digest_of = {Path(path_of[d]): d for d in missing}
        for batch in embedder.iter_encode_files(list(digest_of), show_progress_bar=show_progress_bar):
            cached.update(zip([digest_of[Path(p)] for p in batch.paths], batch.vectors, strict=True))
            reasons |= {digest_of[Path(error.path)]: error.reason for error in batch.errors}
        if len(missing) > len(reasons):
            _write_cache(cache_file, cached)
    for position, digest in enumerate(digests):
        if digest in reasons:  # every file with a bad file's content is bad
            skipped.append(BadImageError(paths[position], reasons[digest]))
            digest_array[position] = ""
    kept = digest_array != ""
    vectors = (
        np.stack([cached[d] for d in digest_array[kept]])
        if kept.any()
        else np.zeros((0, embedder.spec.dim), np.float32)
    )
    skipped.sort(key=lambda error: str(error.path))
    return vectors, skipped


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _read_cache(cache_file: Path, dim: int) -> dict[str, np.ndarray]:
    if not cache_file.exists():
        return {}
    with np.load(cache_file) as stored:
        if stored["vectors"].shape[1:] != (dim,):
            return {}
        return dict(zip(stored["digests"].tolist(), stored["vectors"], strict=True))


def _write_cache(cache_file: Path, cached: dict[str, np.ndarray]) -> None:
    """Write atomically, so an interrupted run never leaves a truncated cache behind."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(".partial.npz")
    np.savez(partial, digests=np.array(list(cached)), vectors=np.stack(list(cached.values())))
    os.replace(partial, cache_file)


def labelled_images(dataset_dir: str | Path) -> tuple[list[Path], np.ndarray]:
    """Return ``(paths, labels)`` of a folder with one subfolder per label; raises when it holds none."""
    paths, labels = list_labelled_images(dataset_dir)
    if not paths:
        raise ImageRankError(_no_images_message(dataset_dir))
    return paths, labels


def _no_images_message(dataset_dir: str | Path) -> str:
    return f"{dataset_dir}: no images in label subfolders (expected DATASET/<label>/<image>)"


@dataclass(frozen=True)
class LabelledEmbeddings:
    """The images of a labelled folder that could be embedded, their labels and vectors (one array per
    model), and the files that were skipped, each with its reason."""

    paths: list[Path]
    labels: np.ndarray
    vectors: dict[str, np.ndarray]
    skipped: list[BadImageError]
    dropped_labels: dict[str, int] = field(default_factory=dict)
    """Labels left out for having fewer images than asked (``min_per_label``), with their counts."""


def embed_labelled_folder(
    dataset_dir: str | Path,
    models: Sequence[str] = (DEFAULT_MODEL,),
    min_per_label: int = 1,
    show_progress_bar: bool = False,
) -> LabelledEmbeddings:
    """List a labelled folder as `imagerank index` does, and embed it with each model (cached).

    Files that cannot be read or decoded are skipped, as indexing skips them, and returned with their
    reasons. Labels with fewer than ``min_per_label`` images (after skipping) are left out.

    Raises:
        ImageRankError: the folder holds no images in label subfolders.
    """
    paths, labels, skipped = scan_labelled_images(dataset_dir)
    if not paths:
        raise ImageRankError(_no_images_message(dataset_dir))
    vectors: dict[str, np.ndarray] = {}
    for model in models:
        parts = []
        for name in _backbones(model):
            part, bad = _cached_embeddings_skipping_bad(
                paths, create_embedder(name), cache_dir() / "embeddings", show_progress_bar
            )
            if bad:
                keep = ~np.isin([str(path) for path in paths], [str(error.path) for error in bad])
                paths, labels = [path for path, kept in zip(paths, keep, strict=True) if kept], labels[keep]
                vectors = {done: array[keep] for done, array in vectors.items()}
                parts = [array[keep] for array in parts]
                skipped.extend(bad)
            parts.append(part)
        vectors[model] = joined_embeddings(parts)
    counts = dict(zip(*np.unique(labels, return_counts=True), strict=True))
    dropped = {str(label): int(count) for label, count in counts.items() if count < min_per_label}
    if dropped:
        keep = ~np.isin(labels, list(dropped))
        paths, labels = drop_small_labels(paths, labels, min_per_label)
        vectors = {model: array[keep] for model, array in vectors.items()}
    if not paths:
        raise ImageRankError(
            f"{dataset_dir}: no label has {min_per_label} images that could be read; use a smaller "
            "--min-per-label"
        )
    return LabelledEmbeddings(paths, labels, vectors, sorted(skipped, key=lambda e: str(e.path)), dropped)


def dataset_embeddings(
    paths: Sequence[str | Path], model: str = DEFAULT_MODEL, show_progress_bar: bool = False
) -> np.ndarray:
    """Return one vector per path, embedding only files the on-disk cache has not seen.

    ``model`` may join backbones with ``+`` (``mobilenet_v2+efficientnet_lite0``): the vectors are then
    :func:`joined_embeddings` of each backbone's, so learned methods see what either backbone saw.
    """
    return joined_embeddings(
        [
            cached_embeddings(
                paths, create_embedder(name), cache_dir() / "embeddings", show_progress_bar=show_progress_bar
            )
            for name in _backbones(model)
        ]
    )


def _backbones(model: str) -> list[str]:
    backbones = [name.strip() for name in model.split("+")]
    if "" in backbones:
        raise ValueError(
            f"empty backbone name in {model!r}; join backbones as 'mobilenet_v2+efficientnet_lite0'"
        )
    return backbones


def joined_embeddings(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Return each part's unit rows side by side, scaled by ``1 / sqrt(len(parts))``.

    The result has unit rows, and the cosine of two of them is the mean of the parts' cosines, so every
    method works on it unchanged and no backbone outweighs another. One part comes back unit-normalised.
    """
    return np.hstack([normalized(part) for part in parts]) / np.float32(np.sqrt(len(parts)))
