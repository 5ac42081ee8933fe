"""Methods that learn from the labelled training vectors: a discriminant projection and a linear probe.

Both first project onto the principal subspace of the training and unlabelled vectors (an
unsupervised step: it sees the pool's vectors, never its labels), which keeps the fits fast and well
conditioned. Both blend their learned similarity with cosine in the half-whitened principal subspace,
a label-free similarity, so that queries from a category the training labels never mention still rank
at least as well as cosine.
"""

from __future__ import annotations

from typing import Self

import numpy as np
import scipy.linalg
from scipy.special import expit

from imagerank.ranking._base import (
    Ranker,
    check_fitted,
    normalized,
    posterior_similarity,
    sharpened_posteriors,
)


def principal_subspace(vectors: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(mean, basis)`` of the top ``n_components`` principal axes of unit-normalised vectors."""
    unit = normalized(vectors)
    mean = unit.mean(axis=0)
    centred = unit - mean
    covariance = centred.T @ centred / max(len(unit) - 1, 1)
    dim = covariance.shape[0]
    n_components = min(n_components, dim)
    # only the top eigenpairs: several times faster than a full decomposition
    _, eigenvectors = scipy.linalg.eigh(covariance, subset_by_index=[dim - n_components, dim - 1])
    return mean, eigenvectors[:, ::-1]


def axis_scales(projected_pool: np.ndarray) -> np.ndarray:
    """Return the square root of each principal axis' spread over the pool ("half whitening").

    Dividing coordinates by it makes cosine weigh the many small, discriminative axes more than plain
    cosine does: :func:`half_whitened_similarity` ranks above cosine on categories absent from training
    (on CNN features; not on isotropic noise), which makes it the fallback of both rankers' novelty gates.
    """
    return np.sqrt(np.maximum(projected_pool.std(axis=0), np.finfo(np.float32).tiny))


def half_whitened_similarity(query_coordinates: np.ndarray, candidate_coordinates: np.ndarray) -> np.ndarray:
    """Return the cosine of every pair of principal coordinates already divided by :func:`axis_scales`."""
    return normalized(query_coordinates) @ normalized(candidate_coordinates).T


POOL_LIMIT = 100_000
"""The most unlabelled vectors a fit learns its principal axes from; beyond that, a fixed random sample.
The axes of 100,000 images are the collection's for ranking (at 59,144 images a sample of 10,000 moved the
seed protocol's P@10 by 0.001), and a fit's memory stays bounded: fitting on a million 1280-d vectors
whole needs several 5 GB copies of them."""


def _fit_pool(train_vectors: np.ndarray, unlabelled_vectors: np.ndarray | None) -> np.ndarray:
    if unlabelled_vectors is None or len(unlabelled_vectors) == 0:
        return train_vectors
    if len(unlabelled_vectors) > POOL_LIMIT:
        sample = np.random.default_rng(0).choice(len(unlabelled_vectors), POOL_LIMIT, replace=False)
        unlabelled_vectors = unlabelled_vectors[np.sort(sample)]
    return np.concatenate([train_vectors, unlabelled_vectors])


def class_indices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(classes, index)``: sorted distinct labels and each label's position among them."""
    classes, index = np.unique(np.asarray(labels), return_inverse=True)
    if classes.size < 2:
        raise ValueError(f"a learned ranker needs at least 2 labels in training, got {classes.size}")
    return classes, index


class LDARanker(Ranker):
    """Cosine similarity after a shrinkage LDA projection learned on the labelled vectors.

    The discriminant axes whiten the within-class covariance, so the LDA posterior of a vector is a
    softmax over minus half its squared distances to the class means; the same novelty gate as
    :class:`ProbeRanker` blends towards cosine in the half-whitened principal subspace (see
    :func:`axis_scales`) for queries of categories absent from training.

    Args:
        n_components: dimensions of the principal subspace the LDA is fitted in.
        shrinkage: weight of the identity in the within-class covariance (0 = none, 1 = only it).
        novelty_threshold: confidence at which the gate is half open; 0 trusts every query's class.
        novelty_slope: how sharply the gate opens around the threshold.
    """

    def __init__(
        self,
        n_components: int = 256,
        shrinkage: float = 0.1,
        novelty_threshold: float = 0.35,
        novelty_slope: float = 40.0,
    ) -> None:
        self.n_components = n_components
        self.shrinkage = shrinkage
        self.novelty_threshold = novelty_threshold
        self.novelty_slope = novelty_slope

    def fit(
        self,
        train_vectors: np.ndarray,
        train_labels: np.ndarray,
        unlabelled_vectors: np.ndarray | None = None,
    ) -> Self:
        """Learn the principal subspace, then the discriminant axes and class means within it."""
        pool = _fit_pool(train_vectors, unlabelled_vectors)
        mean, basis = principal_subspace(pool, self.n_components)
        projected = (normalized(train_vectors) - mean) @ basis
        classes, index = class_indices(train_labels)
        one_hot = np.eye(classes.size)[index]
        class_means = (one_hot.T @ projected) / one_hot.sum(axis=0)[:, None]
        axes = self._discriminant_axes(projected, class_means, index)
        self.mean_, self.basis_ = mean, basis
        self.axis_scale_ = axis_scales((normalized(pool) - mean) @ basis)
        self.projection_ = basis @ axes
        self.class_means_ = class_means @ axes
        return self

    def _discriminant_axes(
        self, projected: np.ndarray, class_means: np.ndarray, index: np.ndarray
    ) -> np.ndarray:
        within = projected - class_means[index]
        within_cov = within.T @ within / len(projected)
        dim = within_cov.shape[0]
        identity = np.trace(within_cov) / dim * np.eye(dim)
        within_cov = (1 - self.shrinkage) * within_cov + self.shrinkage * identity
        counts = np.bincount(index)
        centred_means = class_means - projected.mean(axis=0)
        between_cov = (centred_means * counts[:, None]).T @ centred_means / len(projected)
        _, axes = scipy.linalg.eigh(between_cov, within_cov)  # axes.T @ within_cov @ axes = I
        return axes[:, ::-1][:, : min(len(class_means) - 1, dim)]

    def _coordinates(self, vectors: np.ndarray) -> np.ndarray:
        check_fitted(self, "projection_")
        return (normalized(vectors) - self.mean_) @ self.projection_

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """Return the unit-normalised LDA coordinates of ``vectors``."""
        return normalized(self._coordinates(vectors))

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        """Return tempered LDA log-posteriors: minus half the squared distance to each class mean."""
        coordinates = self._coordinates(vectors)
        squared = (
            (coordinates**2).sum(axis=1, keepdims=True)
            - 2 * coordinates @ self.class_means_.T
            + (self.class_means_**2).sum(axis=1)
        )
        # the exact Gaussian posterior is near-certain for every vector in ~100 whitened dimensions;
        # dividing by the number of axes makes its confidence informative for the novelty gate
        return -0.5 * squared * (_LDA_TEMPERATURE / self.class_means_.shape[1])

    def _half_whitened(self, vectors: np.ndarray) -> np.ndarray:
        return ((normalized(vectors) - self.mean_) @ self.basis_) / self.axis_scale_

    def score(self, query_vectors: np.ndarray, candidate_vectors: np.ndarray) -> np.ndarray:
        """Return ``gate * LDA-space cosine + (1 - gate) * half-whitened cosine``."""
        learned = self.transform(query_vectors) @ self.transform(candidate_vectors).T
        plain = normalized(query_vectors) @ normalized(candidate_vectors).T
        fallback = half_whitened_similarity(
            self._half_whitened(query_vectors), self._half_whitened(candidate_vectors)
        )
        gate = known_class_gate(
            self.logits(query_vectors),
            self.logits(candidate_vectors),
            plain,
            self.novelty_threshold,
            self.novelty_slope,
        )
        return gate * learned + (1 - gate) * fallback


class ProbeRanker(Ranker):
    """Rank by the probability that query and candidate share a label, from a linear probe.

    A class-balanced multinomial logistic regression trained on the labelled vectors gives class
    posteriors for queries and candidates; ``P(same label) = sum_c p(c | query) p(c | candidate)``
    ranks best when the posteriors are right. A query from a category absent from training has no
    right posterior, so a novelty gate blends towards a soft score (cosine of flattened posteriors plus
    cosine in the half-whitened principal subspace) that ranks above cosine on held-out categories;
    that fallback is good enough to let the gate open early. The gate reads the query's
    confidence (largest posterior) averaged with that of its nearest candidates: images of an unseen
    category sit among other low-confidence images. Confidence is measured above chance
    (``1 / n_classes``), so the threshold means the same with 10 training labels or 100.

    Args:
        n_components: dimensions of the principal subspace the probe is trained in.
        C: inverse L2 regularisation strength of the logistic regression.
        sharpness: logits are multiplied by this before ``P(same label)``; above 1 is more decisive.
        novelty_threshold: confidence at which the gate is half open; 0 trusts every query's class.
        novelty_slope: how sharply the gate opens around the threshold.
    """

    def __init__(
        self,
        n_components: int = 256,
        C: float = 3.0,
        sharpness: float = 2.0,
        novelty_threshold: float = 0.45,
        novelty_slope: float = 20.0,
    ) -> None:
        self.n_components = n_components
        self.C = C
        self.sharpness = sharpness
        self.novelty_threshold = novelty_threshold
        self.novelty_slope = novelty_slope

    def fit(
        self,
        train_vectors: np.ndarray,
        train_labels: np.ndarray,
        unlabelled_vectors: np.ndarray | None = None,
    ) -> Self:
        """Learn the principal subspace, then a class-balanced logistic regression within it."""
        class_indices(train_labels)
        pool = _fit_pool(train_vectors, unlabelled_vectors)
        self.mean_, self.basis_ = principal_subspace(pool, self.n_components)
        self.axis_scale_ = axis_scales(self._projected(pool))
        from sklearn.linear_model import LogisticRegression  # imported only to fit, not to search

        # tol=1e-3 stops after ~12 L-BFGS steps instead of ~30, with the same rankings within noise
        self.classifier_ = LogisticRegression(C=self.C, class_weight="balanced", tol=1e-3, max_iter=500)
        self.classifier_.fit(self._projected(train_vectors), np.asarray(train_labels))
        return self

    def _projected(self, vectors: np.ndarray) -> np.ndarray:
        return (normalized(vectors) - self.mean_) @ self.basis_

    def _half_whitened(self, vectors: np.ndarray) -> np.ndarray:
        check_fitted(self, "axis_scale_")
        return self._projected(vectors) / self.axis_scale_

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        """Return the probe's class logits, one row per vector, columns in ``classifier_.classes_``."""
        check_fitted(self, "classifier_")
        logits = self.classifier_.decision_function(self._projected(vectors))
        if logits.ndim == 1:  # two classes: scikit-learn gives the logit of the second only
            logits = np.column_stack([np.zeros_like(logits), logits])
        return logits

    def score(self, query_vectors: np.ndarray, candidate_vectors: np.ndarray) -> np.ndarray:
        """Return ``gate * P(same label) + (1 - gate) * soft score`` (see the class docstring)."""
        query_logits, candidate_logits = self.logits(query_vectors), self.logits(candidate_vectors)
        plain = normalized(query_vectors) @ normalized(candidate_vectors).T
        whitened = half_whitened_similarity(
            self._half_whitened(query_vectors), self._half_whitened(candidate_vectors)
        )
        same_label = posterior_similarity(
            sharpened_posteriors(query_logits, self.sharpness),
            sharpened_posteriors(candidate_logits, self.sharpness),
        )
        flat_similarity = (
            normalized(sharpened_posteriors(query_logits, _FLAT))
            @ normalized(sharpened_posteriors(candidate_logits, _FLAT)).T
        )
        soft = 0.5 * flat_similarity + 0.5 * whitened
        gate = known_class_gate(
            query_logits, candidate_logits, plain, self.novelty_threshold, self.novelty_slope
        )
        return gate * same_label + (1 - gate) * soft


def known_class_gate(
    query_logits: np.ndarray,
    candidate_logits: np.ndarray,
    plain: np.ndarray,
    threshold: float,
    slope: float,
) -> np.ndarray:
    """Return, per query, a weight near 1 when its category is likely among the training labels.

    The confidence read is the query's own (30%) averaged with that of its nearest candidates by
    ``plain`` cosine (70%), which separates seen from unseen categories better than either alone.
    """
    query_confidence = confidence_above_chance(query_logits)
    candidate_confidence = confidence_above_chance(candidate_logits)
    n_neighbours = min(_GATE_NEIGHBOURS, plain.shape[1])
    if n_neighbours == 0:
        return np.ones((len(query_logits), 1))
    neighbours = np.argpartition(-plain, n_neighbours - 1, axis=1)[:, :n_neighbours]
    confidence = 0.3 * query_confidence + 0.7 * candidate_confidence[neighbours].mean(axis=1)
    return expit(slope * (confidence - threshold))[:, None]


def confidence_above_chance(logits: np.ndarray) -> np.ndarray:
    """Return the largest posterior rescaled so that 0 is chance (1 / n_classes) and 1 is certainty."""
    chance = 1.0 / logits.shape[1]
    return (sharpened_posteriors(logits, 1.0).max(axis=1) - chance) / (1.0 - chance)


_LDA_TEMPERATURE = 3.0
_FLAT = 0.5  # logit scale of the flattened posteriors used as a descriptor for unseen categories
_GATE_NEIGHBOURS = 5
