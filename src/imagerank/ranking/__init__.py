"""Ranking methods behind one small scikit-learn-shaped interface, and a registry of them by name.

Every method is a :class:`Ranker`: ``fit(train_vectors, train_labels, unlabelled_vectors=None)``
returns ``self``; ``rank(query_vectors, candidate_vectors, k=None)`` returns FAISS-style
``(scores, ids)`` with ids into the candidates, best first. Methods never see candidate or query
labels. :func:`get_method` builds one from a name such as ``"cosine"``, ``"probe"`` or a composition
``"probe+qe"`` (a ranker followed by one or more re-rankers). Rankers work on arrays only: this package
may import `imagerank.errors` and nothing else of imagerank.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from imagerank.ranking._base import NotFittedError, Ranker, normalized, top_k
from imagerank.ranking.baselines import CosineRanker, RandomRanker
from imagerank.ranking.feedback import feedback_refined_scores, refine, rocchio_query
from imagerank.ranking.graph import LabelSpreadingRanker
from imagerank.ranking.hybrid import HybridRanker
from imagerank.ranking.learned import LDARanker, ProbeRanker
from imagerank.ranking.rerank import DatabaseAugmentation, KReciprocal, QueryExpansion, Reranker

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "RERANKERS",
    "CosineRanker",
    "DatabaseAugmentation",
    "HybridRanker",
    "KReciprocal",
    "LDARanker",
    "LabelSpreadingRanker",
    "NotFittedError",
    "ProbeRanker",
    "QueryExpansion",
    "RandomRanker",
    "Ranker",
    "Reranker",
    "feedback_refined_scores",
    "get_method",
    "list_methods",
    "normalized",
    "refine",
    "rocchio_query",
    "top_k",
]

METHODS: dict[str, Callable[..., Ranker]] = {
    "random": RandomRanker,
    "cosine": CosineRanker,
    "lda": LDARanker,
    "probe": ProbeRanker,
    "probe-closed": partial(ProbeRanker, novelty_threshold=0.0),
    "propagation": LabelSpreadingRanker,
    "hybrid": HybridRanker,
}
"""Rankers by name. ``probe-closed`` trusts every query's predicted class (no novelty gate): the best
choice when every query's category has training labels, a poor one otherwise.
``hybrid`` is the default: near the probe where the labels cover the query's category and near
``dba+kreciprocal`` where they do not (see :class:`HybridRanker`)."""

DEFAULT_METHOD = "hybrid"
"""The method searches use when none is named."""

RERANKERS: dict[str, Callable[..., Reranker]] = {
    "qe": QueryExpansion,
    "dba": DatabaseAugmentation,
    "kreciprocal": KReciprocal,
}
"""Re-rankers by name; alone they re-rank cosine, after ``+`` they re-rank the method before them."""


def list_methods() -> list[str]:
    """Return every registered name (compose them with ``+``, e.g. ``probe+qe``)."""
    return [*METHODS, *RERANKERS]


def get_method(name: str, **params: Any) -> Ranker:
    """Return a new, unfitted ranker for ``name``.

    ``name`` is a registered ranker or re-ranker, or a composition ``"first+reranker+..."`` in which
    each re-ranker re-ranks the scores of everything before it. ``params`` go to the last step.

    Raises:
        ValueError: an unknown name, or a re-ranker's name before another step's.

    Example:
        >>> get_method("probe+qe", n_neighbours=10)
    """
    first, *rest = [step.strip() for step in name.split("+")]
    steps = [first, *rest] if first in METHODS else ["cosine", first, *rest]
    unknown = [step for step in steps[1:] if step not in RERANKERS]
    if steps[0] not in METHODS or unknown:
        bad = steps[0] if steps[0] not in METHODS else unknown[0]
        raise ValueError(
            f"unknown ranking method {bad!r} in {name!r}; rankers: {', '.join(METHODS)}; "
            f"re-rankers (after '+'): {', '.join(RERANKERS)}"
        )
    ranker = METHODS[steps[0]](**(params if len(steps) == 1 else {}))
    for position, step in enumerate(steps[1:], start=2):
        ranker = RERANKERS[step](ranker, **(params if position == len(steps) else {}))
    return ranker
