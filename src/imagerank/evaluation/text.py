"""Evaluate search by words on a labelled dataset, each label name being a query (``evaluate --text``).

- **zero-shot**: the text ranker is fitted on every image with no label; each label name ranks all the
  images, and the images of that label are the relevant ones;
- **with labels**: the protocol's training images are labelled, its candidates are not; each label name
  ranks the candidates (the training images are known already and left out of the ranking);
- **zero-shot, after one round of feedback**: as zero-shot, then the first K results are marked relevant or
  not by their labels, as a user would mark the first page, and the text is searched again with those marks
  (`imagerank.ranking.feedback_refined_scores`). Its P@K is that of the new first page, the images marked
  relevant included (those marked not relevant are never returned).

Label names are turned into words as the bridge reads any text ("car_side" -> "car side"); nothing else is
looked up per name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagerank.evaluation import metrics
from imagerank.evaluation.protocols import Protocol
from imagerank.ranking import feedback_refined_scores, normalized
from imagerank.text import create_text_ranker

__all__ = ["TextEvaluation", "TextScores", "evaluate_text"]


@dataclass(frozen=True)
class TextScores:
    """Per label name (the query): P@K and average precision over the ranked images."""

    names: list[str]
    precision: np.ndarray
    average_precision: np.ndarray
    n_ranked: int

    @property
    def mean_precision(self) -> float:
        return float(self.precision.mean()) if len(self.precision) else 0.0

    @property
    def mean_average_precision(self) -> float:
        return float(self.average_precision.mean()) if len(self.average_precision) else 0.0

    @property
    def names_at_zero(self) -> list[str]:
        return [name for name, value in zip(self.names, self.precision, strict=True) if value == 0]

    def to_dict(self, k: int) -> dict[str, Any]:
        return {
            f"mean_p@{k}": self.mean_precision,
            "map": self.mean_average_precision,
            "names_at_zero": self.names_at_zero,
            "images_ranked": self.n_ranked,
            "per_name": {
                name: {f"p@{k}": float(p), "ap": float(ap)}
                for name, p, ap in zip(self.names, self.precision, self.average_precision, strict=True)
            },
        }


@dataclass(frozen=True)
class TextEvaluation:
    """Zero-shot and with-labels text search scores of one backbone on one labelled dataset."""

    model: str
    k: int
    protocol: str
    zero_shot: TextScores
    with_labels: TextScores
    after_feedback: TextScores

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "k": self.k,
            "protocol": self.protocol,
            "zero_shot": self.zero_shot.to_dict(self.k),
            "with_labels": self.with_labels.to_dict(self.k),
            "zero_shot_after_feedback": self.after_feedback.to_dict(self.k),
        }


def evaluate_text(
    vectors: np.ndarray,
    labels: np.ndarray,
    model: str,
    protocol: Protocol,
    k: int = 10,
    weights: str | Path | None = None,
) -> TextEvaluation:
    """Score text search with each label name as a query, zero-shot and with the protocol's labels."""
    labels = np.asarray(labels)
    names = sorted(set(labels.tolist()))
    ranker = create_text_ranker(model, weights)
    ranker.fit(vectors, [None] * len(labels))
    zero_shot = _scores(ranker, names, labels, k)
    after_feedback = _scores(_FeedbackOnFirstPage(ranker, normalized(vectors), labels, k), names, labels, k)
    split = protocol.split(labels)
    fitted = np.concatenate([split.train, split.candidates])
    known = [str(label) for label in labels[split.train]] + [None] * len(split.candidates)
    ranker = create_text_ranker(model, weights)
    ranker.fit(vectors[fitted], known)
    with_labels = _scores(ranker, names, labels[fitted], k, among=np.arange(len(split.train), len(fitted)))
    return TextEvaluation(model, k, protocol.describe(), zero_shot, with_labels, after_feedback)


@dataclass(frozen=True)
class _FeedbackOnFirstPage:
    """A text ranker whose every search is followed by one round of feedback: its first ``k`` results are
    marked relevant when their label is the text, not relevant otherwise, and the text is scored again."""

    ranker: Any
    vectors: np.ndarray
    labels: np.ndarray
    k: int

    def score(self, name: str) -> np.ndarray:
        scores = np.asarray(self.ranker.score(name))
        first_page = np.argsort(-scores, kind="stable")[: self.k]
        marked_relevant = self.labels[first_page] == name
        return feedback_refined_scores(
            scores, self.vectors, first_page[marked_relevant], first_page[~marked_relevant]
        )


def _scores(
    ranker: Any, names: list[str], labels: np.ndarray, k: int, among: np.ndarray | None = None
) -> TextScores:
    among = np.arange(len(labels)) if among is None else among
    relevant_rows = []
    for name in names:
        scores = np.asarray(ranker.score(name))[among]
        ranking = among[np.argsort(-scores, kind="stable")]
        relevant_rows.append(labels[ranking] == name)
    relevant = np.array(relevant_rows)
    n_relevant = relevant.sum(axis=1)
    return TextScores(
        names=names,
        precision=metrics.precision_at_k(relevant, k),
        average_precision=metrics.average_precision(relevant, n_relevant),
        n_ranked=len(among),
    )
