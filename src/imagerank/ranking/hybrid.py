"""The default ranking: a linear probe for categories the labels cover, k-reciprocal re-ranking for the rest.

A learned ranking is only as good as the labels behind it: for a query whose category no training label
mentions, the probe's ``P(same label)`` ranks below plain cosine, while unsupervised re-ranking of the
collection (database augmentation, then k-reciprocal neighbours) ranks well above it. :class:`HybridRanker`
computes both and blends them per query, by how confidently the probe classifies the query's
neighbourhood, so that one method with one set of parameters is good on both kinds of query.
"""

from __future__ import annotations

from typing import Self

import numpy as np
from scipy.special import expit, logit

from imagerank.ranking._base import (
    Ranker,
    check_fitted,
    nearest_ids,
    normalized,
    posterior_similarity,
    sharpened_posteriors,
)
from imagerank.ranking.learned import (
    _fit_pool,
    axis_scales,
    class_indices,
    confidence_above_chance,
    principal_subspace,
)
from imagerank.ranking.rerank import augmented_scores, kreciprocal_scores

PRIOR_QUERY_SAMPLE = 2000
PRIOR_NEIGHBOUR_SAMPLE = 20000
"""The collection's prior is read from this many unlabelled images, each with its nearest among this many."""
PRIOR_LIMIT = 0.02
"""The prior is clipped to [PRIOR_LIMIT, 1 - PRIOR_LIMIT]: no collection shuts or opens the gate alone."""
DUPLICATE_SIMILARITY = 0.95
"""Cosine similarity from which a candidate is a near-copy of the query (a burst, an edit), which says nothing
of its category: `HybridRanker.nearer_than_labels` does not count it. Caltech-101 has few (MobileNetV2: 2 of
the seed protocol's 510 queries have a candidate that near)."""
REFERENCE_LIMIT = 5000
"""At most this many labelled images are kept as references (as many of each label as fit; one of each
beyond that many labels): comparing a query with 5,000 takes about 0.5 ms, with 10,000 2 ms (1,280
dimensions, 2 cores). On Caltech-101 (measured before the count was set against the unlabelled images per
reference), 20 to 50 of each label gave P@10 within 0.001 of all 70 on the seed protocol and the unseen
halves; 10 of each cost up to 0.005 on the seed protocol (joined backbones): with fewer references the gate
shuts more often."""


class HybridRanker(Ranker):
    """Blend, per query, a probe's ``P(same label)`` with database-augmented k-reciprocal re-ranking.

    * The **learned** score is ``P(same label)`` from a class-balanced logistic regression trained on
      half-whitened principal coordinates (each axis divided by the square root of its spread, see
      :func:`~imagerank.ranking.learned.axis_scales`), strongly regularised (``C=0.1``): on the seed
      protocol that probe classifies 92% of the queries right against 91.6% for
      :class:`~imagerank.ranking.ProbeRanker`'s plain coordinates (``C=3``), P@10 0.903 against 0.896.
    * The **fallback** is ``dba+kreciprocal`` over cosine, computed from one Gram matrix of the
      queries and candidates (identical to that composition's scores).
    * The **gate** reads the probe's confidence above chance, ``query_weight`` times the query's own
      plus the rest times the mean over its ``gate_neighbours`` nearest candidates by cosine: images of
      a category the labels never mention sit among other low-confidence images. It adds how **near the
      labels** the query is: ``reference_weight * (reference_margin + log(1 + u) - log(1 + n))``, where
      ``n`` is the number of candidates more similar to it than its nearest labelled image (among
      ``references_``, a sample of them; `nearer_than_labels`) and ``u`` the number of unlabelled
      images per reference in the collection (``unlabelled_per_reference_``). Were the query's category
      labelled like the others, about ``u`` images would come before its nearest labelled one; for a
      category nobody labelled, all the images of its own category do (MobileNetV2 on Caltech-101, where
      ``u`` is 0.4: none for 74% of the seed protocol's queries, a median of 4-5 of its 10 nearest on
      the unseen halves). A count, not a difference of similarities, so that it reads the same on
      backbones whose similarities spread differently; against ``u``, so that it reads the same in a
      collection a hundred times larger than its labels. Then the collection's **prior**:
      ``prior_weight`` times the log-odds of the fraction of the unlabelled images that the labels seem
      to cover (``known_fraction_``, the mean gate without the prior or the references over a sample of
      them, learned in `fit`; 0.5, no shift, without unlabelled images). A folder of labelled categories
      opens the gate wider, one of new categories shuts it further. Each score is scaled to [0, 1] per
      query before ``gate * learned + (1 - gate) * fallback``.

    Settings chosen on Caltech-101 (P@10 on the seed protocol and on three "unseen half" splits: the
    seed split with 51 random categories (seeds 100, 101, 102) left out of training, queries and
    candidates only from those), on MobileNetV2 embeddings and on MobileNetV2 + EfficientNet-Lite0
    joined, and checked on the mixed protocols below. ``C=0.1`` and ``sharpness=4`` maximise the learned
    score alone on the seed protocol (0.903 / 0.928). Without the prior, the threshold trades one protocol
    against the other (MobileNetV2, seed / mean unseen): 0.2 gives 0.901 / 0.850, 0.25 0.899 / 0.865,
    0.3 0.894 / 0.868 and 0.35 0.885 / 0.870; ``dba+kreciprocal`` alone has 0.797 / 0.868, ``probe+qe``
    0.892 / 0.795, cosine 0.659 / 0.755. The collection's prior moves that frontier, because the two
    protocols' collections differ (``known_fraction_``, MobileNetV2: 0.90 on the seed protocol, 0.05-0.13
    on the unseen halves, 0.47-0.54 on the mixed ones, where half the categories are labelled). The
    threshold 0.34 with ``prior_weight=1`` (slope 20, 10 neighbours, query weight 0.15) gave 0.899 /
    0.868, and joined 0.927 / 0.881 (``dba+kreciprocal`` 0.829 / 0.881, ``probe+qe`` 0.905 / 0.839). It was
    picked as the setting that loses (almost) nothing on a mostly labelled collection, where the prior
    hurts the few queries of unlabelled categories: the seed split with one category in four left out of
    training and all categories in the collection ("quarter"), MobileNetV2 0.854 overall and 0.789 on the
    new categories' queries, against 0.854 / 0.791 without the prior (lower thresholds reach further on
    the seed protocol, 0.325: 0.900, 0.3: 0.902, and cost those queries more, 0.773 and 0.769). The
    nearness to the labels then separates the two kinds of query better than the threshold could
    (``reference_weight=2``, ``reference_margin=0.1``, chosen on the same protocols and the quarter, with
    the threshold left at 0.34): MobileNetV2 0.901 / 0.868 and the quarter 0.857 / 0.794; joined 0.927 /
    0.881 and 0.876 / 0.837. Counting only among the query's 10 nearest, without ``u``, did as well here
    and fell at a million images (0.921 to 0.915 with 7,104 labelled), where every query has ten images
    nearer than any labelled one. A difference of similarities in its place (30 times the nearest labelled
    image's similarity less the nearest candidate's, plus 0.025) did as well on MobileNetV2 (0.901 / 0.869)
    but cost EfficientNet-Lite0 alone, which chose nothing, 0.0025 on the seed protocol; the count costs
    it 0.0004 (0.8996 / 0.8463, ``dba+kreciprocal`` 0.8459). On the mixed protocols (the same training labels,
    every category's queries and candidates in one collection) it beats both sides: MobileNetV2 0.816 /
    0.824 / 0.812 on halves 100 / 101 / 102 (0.809 / 0.817 / 0.804 without the nearness, 0.799 / 0.813 /
    0.798 without the prior either), ``dba+kreciprocal`` 0.797, ``probe+qe`` 0.759 / 0.762 / 0.742.
    ``benchmarks/ranking_protocols.py`` prints these numbers.

    Where users search, one query at a time (`imagerank.index.fitted.SEARCH_SETTINGS`), each query is
    re-ranked alone with its 400 nearest images (``fallback_depth=400``): that takes about 10 ms instead
    of 68 ms against 1,000 candidates (MobileNetV2, 2 cores), and nothing where the gate is fully open.
    Through an index (``benchmarks/ranking_protocols.py --searched``, the other queries in the collection
    but never returned) P@10 is then 0.901 on the seed protocol and 0.857 / 0.884 / 0.856 on the unseen
    halves (depth chosen before the prior: 300 gave 0.849 / 0.881 / 0.851 there, 500 as 400).

    Args:
        n_components: dimensions of the principal subspace the probe is trained in.
        C: inverse L2 regularisation strength of the logistic regression.
        sharpness: logits are multiplied by this before ``P(same label)``.
        novelty_threshold: neighbourhood confidence at which the gate is half open.
        novelty_slope: how sharply the gate opens around the threshold.
        gate_neighbours: nearest candidates whose confidence the gate averages.
        query_weight: weight of the query's own confidence in the gate (the rest is its neighbours').
        similarity_weight: weight of cosine (scaled to [0, 1] per query) added to the blend, so that among
            images the probe finds equally likely to share the query's label, the more similar come first
            (a copy of the query first of all); it moves P@10 by under 0.001 on every protocol above.
        prior_weight: weight of the collection's prior (the log-odds of ``known_fraction_``) in the gate's
            log-odds; 0 leaves the gate to each query's neighbourhood alone.
        reference_weight: weight of the query's nearness to the labels (see the gate above) in the gate's
            log-odds; 0 leaves it out.
        reference_margin: added to that nearness: how many more images than expected (on a log scale) may
            come before a query's nearest labelled image before the evidence turns against the labels.
        open_gate: a gate at or above this counts as fully open (1): the fallback would weigh under
            ``1 - open_gate`` there, so it is not computed for that query (P@10 is the same to four
            decimals on every protocol above at 0.99, and 0.98; a search skips the re-ranking for most
            queries of labelled categories).
        fallback_depth: ``None`` re-ranks all queries and candidates together, as ``dba+kreciprocal``
            does; a number re-ranks each query alone with that many of its nearest candidates (by
            cosine), which makes a query's ranking independent of the others in its batch and bounds
            the cost per query (for a search service; see the class notes for what it costs in P@10).
    """

    open_gate = 0.99  # for fits saved before the parameter existed, which unpickle without it
    prior_weight = 0.0  # likewise: fits saved before the collection's prior read the gate without it
    known_fraction_ = 0.5
    reference_weight = 0.0  # and those saved before the references, without the query's nearness to them
    reference_margin = 0.0

    def __init__(
        self,
        n_components: int = 256,
        C: float = 0.1,
        sharpness: float = 4.0,
        novelty_threshold: float = 0.34,
        novelty_slope: float = 20.0,
        gate_neighbours: int = 10,
        query_weight: float = 0.15,
        similarity_weight: float = 0.05,
        open_gate: float = 0.99,
        prior_weight: float = 1.0,
        reference_weight: float = 2.0,
        reference_margin: float = 0.1,
        fallback_depth: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.C = C
        self.sharpness = sharpness
        self.novelty_threshold = novelty_threshold
        self.novelty_slope = novelty_slope
        self.gate_neighbours = gate_neighbours
        self.query_weight = query_weight
        self.similarity_weight = similarity_weight
        self.open_gate = open_gate
        self.prior_weight = prior_weight
        self.reference_weight = reference_weight
        self.reference_margin = reference_margin
        self.fallback_depth = fallback_depth

    def fit(
        self,
        train_vectors: np.ndarray,
        train_labels: np.ndarray,
        unlabelled_vectors: np.ndarray | None = None,
        n_unlabelled: int | None = None,
    ) -> Self:
        """Learn the principal subspace and its axis scales, then the probe on half-whitened coordinates.

        ``n_unlabelled``: how many unlabelled images the collection holds, when ``unlabelled_vectors`` is a
        sample of them (the gate expects as many images nearer a query than its nearest labelled image as
        there are unlabelled images per reference).
        """
        class_indices(train_labels)
        pool = _fit_pool(train_vectors, unlabelled_vectors)
        self.mean_, self.basis_ = principal_subspace(pool, self.n_components)
        self.axis_scale_ = axis_scales((normalized(pool) - self.mean_) @ self.basis_)
        from sklearn.linear_model import LogisticRegression  # imported only to fit, not to search

        # tol=1e-3: a few L-BFGS steps; with C=0.1 more steps change no ranking measurably
        classifier = LogisticRegression(C=self.C, class_weight="balanced", tol=1e-3, max_iter=500)
        classifier.fit(self._half_whitened(train_vectors), np.asarray(train_labels))
        scaled_basis = self.basis_ / self.axis_scale_
        # the fit keeps plain arrays only, so a saved fit loads without scikit-learn
        self.classes_ = classifier.classes_
        self.weights_ = (scaled_basis @ classifier.coef_.T).astype(np.float32)
        self.bias_ = classifier.intercept_ - (self.mean_ @ scaled_basis) @ classifier.coef_.T
        self.known_fraction_ = self._known_fraction(unlabelled_vectors)
        self.references_ = normalized(np.asarray(train_vectors)[reference_rows(train_labels)])
        if n_unlabelled is None:
            n_unlabelled = 0 if unlabelled_vectors is None else len(unlabelled_vectors)
        self.unlabelled_per_reference_ = n_unlabelled / len(self.references_)
        return self

    def _known_fraction(self, unlabelled_vectors: np.ndarray | None) -> float:
        """Return the mean gate (without the prior) over a sample of the unlabelled images, each with its
        nearest among a larger sample: an estimate of the fraction of the collection the labels cover
        (0.5, no evidence either way, without unlabelled images)."""
        if unlabelled_vectors is None or len(unlabelled_vectors) <= self.gate_neighbours:
            return 0.5
        order = np.random.default_rng(0).permutation(len(unlabelled_vectors))[:PRIOR_NEIGHBOUR_SAMPLE]
        neighbours = normalized(unlabelled_vectors[order])
        queries = neighbours[:PRIOR_QUERY_SAMPLE]  # a random sample too: ``order`` is shuffled
        logits = self._unit_logits(neighbours)
        plain = queries @ neighbours.T
        np.fill_diagonal(plain, -np.inf)  # the queries are the first neighbours: not their own
        confidence = self.neighbourhood_confidence(logits[: len(queries)], logits, plain)
        return float(expit(self.novelty_slope * (confidence - self.novelty_threshold)).mean())

    def _half_whitened(self, vectors: np.ndarray) -> np.ndarray:
        return ((normalized(vectors) - self.mean_) @ self.basis_) / self.axis_scale_

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        """Return the probe's class logits, one row per vector, columns in ``classes_``."""
        return self._unit_logits(normalized(vectors))

    def probe_products(self, vectors: np.ndarray) -> np.ndarray:
        """Return each vector's product with the probe (its logits less the bias): what `score` computes
        per candidate, which a search can keep per indexed image and pass back as ``candidate_products``."""
        check_fitted(self, "weights_")
        return normalized(vectors) @ self.weights_

    def _unit_logits(self, unit_vectors: np.ndarray, products: np.ndarray | None = None) -> np.ndarray:
        check_fitted(self, "weights_")
        # the projection, the axis scales and the probe folded into one matrix: one product per vector
        logits = (unit_vectors @ self.weights_ if products is None else products) + self.bias_
        if logits.shape[1] == 1:  # two classes: scikit-learn gives the logit of the second only
            logits = np.column_stack([np.zeros_like(logits), logits])
        return logits

    def gate(
        self, queries: np.ndarray, query_logits: np.ndarray, candidate_logits: np.ndarray, plain: np.ndarray
    ) -> np.ndarray:
        """Return, per query, the weight of the learned score (near 1: its category is likely labelled).

        ``queries``: unit vectors; ``plain``: their cosine similarities to the candidates.
        """
        confidence = self.neighbourhood_confidence(query_logits, candidate_logits, plain)
        prior = np.clip(self.known_fraction_, PRIOR_LIMIT, 1 - PRIOR_LIMIT)
        evidence = self.novelty_slope * (confidence - self.novelty_threshold)
        evidence += self.prior_weight * logit(prior)
        if self.reference_weight:
            nearer = self.nearer_than_labels(queries, plain)
            expected = np.log1p(self.unlabelled_per_reference_)
            evidence += self.reference_weight * (self.reference_margin + expected - np.log1p(nearer))
        gate = expit(evidence)
        return np.where(gate >= self.open_gate, 1.0, gate)[:, None]

    def nearer_than_labels(self, queries: np.ndarray, plain: np.ndarray) -> np.ndarray:
        """Return, per query, how many candidates are more similar to it than its nearest reference
        (labelled image): about ``unlabelled_per_reference_`` or fewer for a category the labels cover,
        many more for a new one.

        ``queries``: unit vectors; ``plain``: their cosine similarities to the candidates (a search's
        shortlist: its nearest candidates, so the count stops at its length). Candidates at least
        :data:`DUPLICATE_SIMILARITY` similar are the query's near-copies (a burst, an edit), which say
        nothing of its category: they are not counted.
        """
        check_fitted(self, "references_")
        nearest_reference = (queries @ self.references_.T).max(axis=1, keepdims=True)
        return ((plain > nearest_reference) & (plain < DUPLICATE_SIMILARITY)).sum(axis=1)

    def neighbourhood_confidence(
        self, query_logits: np.ndarray, candidate_logits: np.ndarray, plain: np.ndarray
    ) -> np.ndarray:
        """Return, per query, the probe's confidence above chance in the query and its nearest candidates."""
        n_neighbours = min(self.gate_neighbours, plain.shape[1])
        neighbours = nearest_ids(plain, n_neighbours)
        # the confidence of the neighbours only: one posterior per neighbour rather than per candidate
        neighbour_confidence = confidence_above_chance(candidate_logits[neighbours.ravel()])
        candidate_confidence = neighbour_confidence.reshape(neighbours.shape).mean(axis=1)
        return (
            self.query_weight * confidence_above_chance(query_logits)
            + (1 - self.query_weight) * candidate_confidence
        )

    def score(
        self,
        query_vectors: np.ndarray,
        candidate_vectors: np.ndarray,
        candidate_products: np.ndarray | None = None,
    ) -> np.ndarray:
        """Return ``gate * learned + (1 - gate) * fallback``, both scaled to [0, 1] per query.

        ``candidate_products``: the candidates' `probe_products`, when known (saves a product per
        candidate; the scores are the same).
        """
        queries, candidates = normalized(query_vectors), normalized(candidate_vectors)
        query_logits = self._unit_logits(queries)
        candidate_logits = self._unit_logits(candidates, candidate_products)
        if len(candidates) == 0:
            return np.zeros((len(queries), 0))
        learned = posterior_similarity(
            sharpened_posteriors(query_logits, self.sharpness),
            sharpened_posteriors(candidate_logits, self.sharpness),
        )
        plain = queries @ candidates.T
        gate = self.gate(queries, query_logits, candidate_logits, plain)
        fallback = np.zeros(plain.shape)
        needed = np.flatnonzero(gate[:, 0] < 1.0)
        if len(needed) and self.fallback_depth is None:
            everything = np.concatenate([queries, candidates])
            gram = everything @ everything.T
            fallback = scaled_per_row(kreciprocal_scores(augmented_scores(gram, gram), len(queries)))
        elif len(needed):
            fallback[needed] = self._shortlisted_fallback(queries[needed], candidates, plain[needed])
        blend = gate * scaled_per_row(learned) + (1 - gate) * fallback
        return blend + self.similarity_weight * scaled_per_row(plain)

    def _shortlisted_fallback(
        self, queries: np.ndarray, candidates: np.ndarray, plain: np.ndarray
    ) -> np.ndarray:
        """Return each query's fallback over itself and its ``fallback_depth`` nearest candidates alone,
        scaled to [0, 1]; candidates outside the shortlist get 0."""
        fallback = np.zeros(plain.shape)
        for row, query in enumerate(queries):
            shortlist = nearest_ids(plain[row : row + 1], self.fallback_depth)[0]
            local = np.concatenate([query[None], candidates[shortlist]])
            gram = local @ local.T
            fallback[row, shortlist] = scaled_per_row(kreciprocal_scores(augmented_scores(gram, gram), 1))[0]
        return fallback


def reference_rows(labels: np.ndarray, limit: int = REFERENCE_LIMIT) -> np.ndarray:
    """Return the sorted rows of a fixed random sample of ``labels``: as many of each label as ``limit``
    allows for all of them alike (at least one of each)."""
    _, label_of = np.unique(np.asarray(labels), return_inverse=True)
    per_label = max(1, limit // (label_of.max() + 1))
    order = np.random.default_rng(0).permutation(len(label_of))
    order = order[np.argsort(label_of[order], kind="stable")]  # grouped by label, shuffled within
    grouped = label_of[order]
    rank_in_label = np.arange(len(order)) - np.searchsorted(grouped, grouped)
    return np.sort(order[rank_in_label < per_label])


def scaled_per_row(scores: np.ndarray) -> np.ndarray:
    """Return each row mapped linearly onto [0, 1] (a constant row becomes 0): an order-preserving scale."""
    low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    return (scores - low) / np.maximum(high - low, np.finfo(np.float64).tiny)
