"""A labelled dataset embedded and evaluated once, for the report and its figures: `evaluate_dataset`
returns an `EvaluatedDataset` that answers rankings, example queries, per-label AP, confusions and map
samples for any of its methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from imagerank.embedding.models import DEFAULT_MODEL
from imagerank.errors import BadImageError
from imagerank.evaluation.embeddings import LabelledEmbeddings, embed_labelled_folder
from imagerank.evaluation.evaluate import EvaluationResult, evaluate_split
from imagerank.evaluation.protocols import AUTO_PROTOCOL, Protocol, Split
from imagerank.ranking import Ranker, get_method
from imagerank.report import plots

if TYPE_CHECKING:
    pass


DEFAULT_METHODS = ("random", "cosine", "lda")


def image_sizes(paths: Sequence[str | Path]) -> np.ndarray:
    """Return ``(n, 2)`` (width, height) as stored in each file's header; unreadable files give (0, 0)."""

    def size(path: str | Path) -> tuple[int, int]:
        try:
            with Image.open(path) as image:
                return image.size
        except OSError:
            return (0, 0)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return np.array(list(pool.map(size, paths)), dtype=np.int64).reshape(-1, 2)


@dataclass
class EvaluatedDataset:
    """A labelled dataset, its embeddings, a protocol split and the fitted methods evaluated on it."""

    paths: list[Path]
    labels: np.ndarray
    vectors: np.ndarray
    model: str
    split: Split
    result: EvaluationResult
    rankers: dict[str, Ranker]
    protocol: Protocol
    skipped: list[BadImageError] = field(default_factory=list)
    """Files of the folder that could not be read or decoded, left out as `imagerank index` leaves them."""
    dropped_labels: dict[str, int] = field(default_factory=dict)
    _ranked: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def query_labels(self) -> np.ndarray:
        return self.labels[self.split.queries]

    @cached_property
    def test_ids(self) -> np.ndarray:
        """Return the dataset indexes of candidates and queries: the images no method was trained on."""
        return np.concatenate([self.split.candidates, self.split.queries])

    def best_method(self) -> str:
        """Return the method with the highest mAP."""
        return max(self.result.methods, key=lambda name: self.result.methods[name].mean("map"))

    def ranking(self, method: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return every query's top-``k`` ``(scores, dataset indexes)`` under ``method``."""
        if (method, k) not in self._ranked:
            vectors = self.vectors
            scores, ids = self.rankers[method].rank(
                vectors[self.split.queries], vectors[self.split.candidates], k
            )
            self._ranked[method, k] = (scores, self.split.candidates[ids])
        return self._ranked[method, k]

    def example_queries(self, n: int, seed: int = 0) -> np.ndarray:
        """Return ``n`` query positions (into ``split.queries``) of distinct labels, drawn reproducibly."""
        rng = np.random.RandomState(seed)
        names = np.unique(self.query_labels)
        chosen = np.sort(rng.choice(names, min(n, len(names)), replace=False))
        return np.array([rng.choice(np.flatnonzero(self.query_labels == name)) for name in chosen])

    def query_results(self, method: str, positions: np.ndarray, k: int) -> list[plots.QueryResults]:
        """Return the top-``k`` results of the queries at ``positions`` under ``method``."""
        scores, ids = self.ranking(method, k)
        return [
            plots.QueryResults(
                query=self.paths[self.split.queries[position]],
                query_label=str(self.query_labels[position]),
                paths=[self.paths[i] for i in ids[position]],
                labels=[str(self.labels[i]) for i in ids[position]],
                scores=[float(s) for s in scores[position]],
            )
            for position in positions
        ]

    def ap_by_label(self, method: str) -> dict[str, float]:
        """Return the mean AP of each label's queries under ``method``."""
        ap = self.result.methods[method].per_query["map"]
        return {
            str(name): float(ap[self.query_labels == name].mean()) for name in np.unique(self.query_labels)
        }

    def confusion(self, method: str, k: int) -> tuple[np.ndarray, list[str]]:
        """Return the top-``k`` confusion matrix of ``method`` and its label order."""
        names = [str(name) for name in np.unique(self.labels)]
        return plots.top_k_confusion(self.query_labels, self.labels[self.ranking(method, k)[1]], names), names

    def map_sample(self, per_label: int, seed: int = 0) -> np.ndarray:
        """Return up to ``per_label`` candidates and queries of each label (dataset indexes), reproducibly."""
        rng = np.random.RandomState(seed)
        test_labels = self.labels[self.test_ids]
        chosen = []
        for name in np.unique(test_labels):
            members = self.test_ids[test_labels == name]
            chosen.append(rng.choice(members, min(per_label, len(members)), replace=False))
        return np.sort(np.concatenate(chosen))

    def learned_spaces(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """Return the images ``ids`` as seen by each method that learns a projection (has ``transform``)."""
        return {
            name: ranker.transform(self.vectors[ids])
            for name, ranker in self.rankers.items()
            if callable(getattr(ranker, "transform", None))
        }


def evaluate_dataset(
    dataset_dir: str | Path,
    model: str = DEFAULT_MODEL,
    protocol: Protocol = AUTO_PROTOCOL,
    methods: Sequence[str] = DEFAULT_METHODS,
    k: int = 10,
    show_progress_bar: bool = False,
    min_per_label: int = 1,
) -> EvaluatedDataset:
    """List, embed (cached) and evaluate a folder with one subfolder per label; bad files are skipped."""
    embedded = embed_labelled_folder(dataset_dir, [model], min_per_label, show_progress_bar)
    return _evaluated(embedded, model, protocol, methods, k)


def _evaluated(
    embedded: LabelledEmbeddings, model: str, protocol: Protocol, methods: Sequence[str], k: int
) -> EvaluatedDataset:
    labels = embedded.labels
    protocol = protocol.fitted(labels)
    split = protocol.split(labels)
    rankers = {name: get_method(name) for name in methods}
    # evaluate_split fits every ranker on the training part; the fitted rankers then draw the figures.
    result = evaluate_split(embedded.vectors[model], labels, split, rankers, protocol.name, k)
    result = replace(result, protocol_parameters=protocol.parameters())
    return EvaluatedDataset(
        embedded.paths,
        labels,
        embedded.vectors[model],
        model,
        split,
        result,
        rankers,
        protocol,
        embedded.skipped,
        embedded.dropped_labels,
    )
