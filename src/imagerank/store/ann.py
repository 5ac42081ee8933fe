"""Index layouts for the embedded store: which FAISS index to build for a collection, and how to search it.

A layout is an :class:`IndexPlan`: a concrete type, the FAISS factory string of its index (behind an
optional PCA), and its search-time settings. ``plan_index("auto", count)`` picks one by collection size.
Every layout is wrapped in ``IDMap2`` so that it speaks the store's image ids. The approximate layouts trade
recall for speed or memory; :func:`recall_at_k` measures that trade against exact search so the store can
report it.

Layouts (cosine = inner product on L2-normalised vectors):

========  ==============================================  ============================================
type      FAISS layout                                    when
========  ==============================================  ============================================
flat      exact, float32                                  small collections; the reference
fp16      exact scan of float16 codes                     half the memory of flat, near-exact
sq8       exact scan of 8-bit codes, exact re-rank        a quarter of the memory, near-exact
hnsw      HNSW graph (M=32) over float32                  fast single queries; auto above 5,000
ivfpq     PCA to 256, IVF + 4-bit PQ fast scan (64 B),   least memory, fast to train; auto above
          refined by 6-bit codes (192 B), exact re-rank   250,000
========  ==============================================  ============================================

The re-ranking layouts fetch a shortlist ``rerank`` times longer than asked and re-score it with the exact
vectors, which the store reads from its SQLite file: the index in memory stays small, the result exact
over the shortlist. IVF-PQ first narrows a longer list (``refine`` times longer again) with finer codes it
keeps in memory, since each exact vector read from SQLite costs about 10 microseconds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import faiss
import numpy as np

from imagerank.errors import ImageRankError

INDEX_TYPES = ("auto", "flat", "fp16", "sq8", "hnsw", "ivfpq")
APPROXIMATE_TYPES = ("fp16", "sq8", "hnsw", "ivfpq")
AUTO_FLAT_MAX = 5_000
"""Up to this many vectors ``auto`` keeps exact search (a query scans 25 MB in about 2 ms); above, HNSW
answers in well under a millisecond with a recall the store measures and reports."""
AUTO_HNSW_MAX = 250_000
"""Up to this many ``auto`` uses HNSW (about 1 ms a query); beyond, IVF-PQ wins on every count. Measured
at 1M x 1280 on 2 cores (`benchmarks/ann.py`): HNSW took 12 minutes to build, 5.4 KB a vector, recall@10
0.905 in 3.2 ms; IVF-PQ under a minute, 282 bytes a vector, recall@10 0.99 in 2.3 ms."""
HNSW_LINKS = 32
HNSW_BUILD_DEPTH = 40
HNSW_SEARCH_DEPTH = 128
PQ_SUBQUANTIZERS = 128
"""4-bit sub-quantisers: 64 bytes a code. FAISS scans 4-bit codes with SIMD ("fast scan") several times
faster than 8-bit ones of the same size, so a query can afford to visit more lists and re-rank a longer
shortlist: better recall in less time."""
PQ_REDUCED_DIMS = 256
"""IVF-PQ first projects longer vectors onto their top principal axes (PCA): it trains several times
faster, and the exact re-ranking restores the order the projection blurs."""
IVF_MAX_LISTS = 1024
"""k-means over more lists costs more training time than 2 cores have; 1,000 vectors a list at 1M is fine."""
IVF_PROBED_FRACTION = 16
"""A query visits one list in this many (64 of 1,024)."""
IVFPQ_REFINE = 12
IVFPQ_RERANK = 5
"""IVF-PQ's fast scan shortlists 600 for k=10; 6-bit codes of the projected vectors (192 bytes) keep the
best 50 for the exact re-rank. Measured at 1M: recall@10 0.991 in 2.3 ms; re-ranking 400 exactly from
SQLite instead found 0.985 in 7 ms."""
RERANK_LIMIT = 1_000
"""The longest list a re-ranking layout re-scores exactly, as long as k allows: a long shortlist (a learned
method asks for 1,000 to re-score them itself) is refined, not multiplied, so it costs 1,000 exact vectors
from SQLite rather than 5,000 (at 1M, 236 ms a search)."""
REFINE_CODE = "SQ6"
IVF_MIN_TRAINING = 40
"""FAISS wants about this many training vectors per IVF list (and warns below 39)."""
RECALL_QUERIES = 200
RECALL_K = 10


@dataclass(frozen=True)
class IndexPlan:
    """A concrete index layout: what to build and how to search it.

    ``requested`` is what the user asked for (``auto`` or a type); ``type`` what was built. ``lists`` and
    ``probes`` are the IVF partition count and how many are visited per query; ``rerank`` the shortlist
    factor re-scored exactly (1 = none); ``refine`` how many times longer the list is that in-memory codes
    narrow down to it (1 = none); ``dims`` an optional PCA reduction before indexing.
    """

    type: str
    requested: str = "auto"
    lists: int = 0
    probes: int = 0
    search_depth: int = 0
    rerank: int = 1
    refine: int = 1
    dims: int = 0
    reason: str = ""

    @property
    def approximate(self) -> bool:
        return self.type in APPROXIMATE_TYPES or self.dims > 0

    @property
    def keeps_vectors(self) -> bool:
        """Whether the FAISS index holds the float32 vectors as added (flat, HNSW), not codes of them."""
        return self.type in ("flat", "hnsw") and not self.dims

    @property
    def supports_removal(self) -> bool:
        """FAISS cannot remove vectors from an HNSW graph. From IVF it can, but not under IDMap2 (the ids
        of later vectors shift, faiss#4656), and IVF fast-scan lists misplace vectors added after a removal
        (FAISS 1.15: only a third then find themselves). The store marks removed vectors dead instead."""
        return self.type not in ("hnsw", "ivfpq")

    def factory(self, dim: int) -> str:
        """The `faiss.index_factory` string of the index over the (projected) vectors, for vectors of
        dimension `dim`; `build_index` puts the PCA and the id map around it."""
        refine = f",Refine({REFINE_CODE})" if self.refine > 1 else ""
        return {
            "flat": "Flat",
            "fp16": "SQfp16",
            "sq8": "SQ8",
            "hnsw": f"HNSW{HNSW_LINKS}",
            "ivfpq": f"IVF{self.lists},PQ{_pq_subquantizers(self.dims or dim)}x4fs{refine}",
        }[self.type]

    def training_size(self) -> int:
        """How many vectors training needs (0: none)."""
        if self.type == "ivfpq":
            return max(IVF_MIN_TRAINING * self.lists, 256 * 40)
        if self.type == "sq8" or self.dims:
            return 10_000
        return 0

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        """One line for people, e.g. ``hnsw (M=32, efSearch=128; auto: 120,000 vectors)``."""
        settings = {
            "hnsw": f"M={HNSW_LINKS}, efSearch={self.search_depth}",
            "ivfpq": f"{self.lists} lists, nprobe={self.probes}, 4-bit PQ",
        }.get(self.type, "")
        extras = [part for part in (settings, f"PCA to {self.dims}" if self.dims else "") if part]
        if self.refine > 1:
            extras.append(f"6-bit refine of {self.rerank * self.refine}x k")
        if self.rerank > 1:
            extras.append(f"exact re-rank of {self.rerank}x k")
        detail = f" ({'; '.join(extras)})" if extras else ""
        return f"{self.type}{detail}" + (f" [{self.reason}]" if self.reason else "")


def plan_index(index_type: str, count: int, dim: int = 0) -> IndexPlan:
    """The layout for a collection of `count` vectors of dimension `dim` (IVF-PQ projects longer ones to
    `PQ_REDUCED_DIMS`).

    ``auto`` picks flat up to `AUTO_FLAT_MAX` vectors, HNSW up to `AUTO_HNSW_MAX`, IVF-PQ beyond. A
    layout that needs training falls back to exact search until the collection holds enough vectors to
    train it, and says so in its ``reason``.
    """
    if index_type not in INDEX_TYPES:
        raise ImageRankError(f"unknown index type {index_type!r}; choose one of {', '.join(INDEX_TYPES)}")
    chosen, reason = index_type, ""
    if index_type == "auto":
        chosen = "flat" if count <= AUTO_FLAT_MAX else "hnsw" if count <= AUTO_HNSW_MAX else "ivfpq"
        reason = f"auto: {count:,} vectors"
    dims = PQ_REDUCED_DIMS if chosen == "ivfpq" and dim > PQ_REDUCED_DIMS else 0
    plan = _plan_of_type(chosen, index_type, count, dims, reason)
    needed = plan.training_size()
    if count < needed:
        return IndexPlan("flat", index_type, reason=f"exact until {needed:,} vectors can train {plan.type}")
    return plan


def _plan_of_type(type_: str, requested: str, count: int, dims: int, reason: str) -> IndexPlan:
    plan = IndexPlan(type_, requested, dims=dims, reason=reason)
    if type_ == "hnsw":
        plan = replace(plan, search_depth=HNSW_SEARCH_DEPTH)
    if type_ == "ivfpq":
        lists = _ivf_lists(count)
        probes = lists // IVF_PROBED_FRACTION
        plan = replace(plan, lists=lists, probes=probes, rerank=IVFPQ_RERANK, refine=IVFPQ_REFINE)
    if type_ == "sq8":
        plan = replace(plan, rerank=4)
    return plan


def _pq_subquantizers(dim: int) -> int:
    """Sub-quantisers of a PQ code: at most `PQ_SUBQUANTIZERS`, an even number (fast scan packs them in
    pairs) dividing `dim`, each of at least 2 dimensions."""
    return max(m for m in range(2, min(PQ_SUBQUANTIZERS, dim // 2) + 1, 2) if dim % m == 0)


def _ivf_lists(count: int) -> int:
    """About 4 sqrt(n) lists (FAISS's rule of thumb), a power of two, at least 256, and no more than
    the collection can train (`IVF_MIN_TRAINING` vectors a list)."""
    rule_of_thumb = 2 ** round(math.log2(4 * math.sqrt(max(count, 1))))
    trainable = (
        2 ** math.floor(math.log2(max(count, 1) / IVF_MIN_TRAINING)) if count >= IVF_MIN_TRAINING else 1
    )
    return max(256, min(rule_of_thumb, trainable, IVF_MAX_LISTS))


def build_index(plan: IndexPlan, dim: int, training: np.ndarray | None = None) -> faiss.Index:
    """An empty, trained FAISS index of the plan's layout, ids mapped by ``IDMap2``.

    The metric is inner product, except after a PCA projection: there, the mean it subtracts would skew
    inner products but leaves L2 distances (which rank unit vectors as cosine does) alone, and the exact
    re-ranking gives back cosine scores.
    """
    metric = faiss.METRIC_L2 if plan.dims else faiss.METRIC_INNER_PRODUCT
    core = faiss.index_factory(plan.dims or dim, plan.factory(dim), metric)
    if plan.type == "hnsw":
        faiss.downcast_index(core).hnsw.efConstruction = HNSW_BUILD_DEPTH
    if plan.dims:
        core = faiss.IndexPreTransform(faiss.PCAMatrix(dim, plan.dims), core)
    index = faiss.IndexIDMap2(core)
    if not index.is_trained:
        if training is None or len(training) < plan.training_size():
            raise ImageRankError(f"{plan.type} needs {plan.training_size():,} training vectors")
        index.train(np.ascontiguousarray(training, dtype=np.float32))
    return index


def search_parameters(
    plan: IndexPlan, index: faiss.Index, selector: faiss.IDSelector | None
) -> faiss.SearchParameters | None:
    """FAISS search parameters for the plan's depth/probes/refine, restricted to `selector` (image ids)
    when given."""
    if plan.type == "ivfpq":
        return _ivf_parameters(plan, index, selector)
    if plan.type == "hnsw":
        params = faiss.SearchParametersHNSW()
        params.efSearch = plan.search_depth
    elif selector is None:
        return None
    else:
        params = faiss.SearchParameters()
    if selector is not None:
        params.sel = selector
    return params


def _ivf_parameters(
    plan: IndexPlan, index: faiss.Index, selector: faiss.IDSelector | None
) -> faiss.SearchParameters:
    """nprobe, and the refine factor around it. IDMap2 translates a selector into index positions only
    for the outermost parameters, which the refine stage does not pass on: the IVF's get it translated."""
    ivf = faiss.SearchParametersIVF()
    ivf.nprobe = plan.probes
    if selector is not None:
        translated = faiss.IDSelectorTranslated(faiss.downcast_index(index).id_map, selector)
        ivf.sel = translated
        ivf.referenced = (translated, selector)  # SWIG keeps no references: params must keep them alive
    if plan.refine == 1:
        return ivf
    params = faiss.IndexRefineSearchParameters()
    params.k_factor = plan.refine
    params.base_index_params = ivf
    params.referenced = ivf
    return params


def recall_at_k(approximate_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean fraction of each query's exact top-k found in its approximate top-k."""
    hits = [
        len(set(found[found >= 0].tolist()) & set(truth[truth >= 0].tolist())) / max(1, (truth >= 0).sum())
        for found, truth in zip(approximate_ids, exact_ids, strict=True)
    ]
    return float(np.mean(hits)) if hits else 1.0
