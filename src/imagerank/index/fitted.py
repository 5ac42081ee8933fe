"""A ranking method fitted to an index: what teaches it, where it is kept, when it is stale, how it searches.

**Labels.** Every image with a label (the name of the folder it is in) is a training example. Images with
no label (files directly in the indexed folder, or in a folder named ``unlabelled``) are the unlabelled
pool: all of them, or a fixed random sample of ``POOL_LIMIT`` (the most any method learns from).

**Persistence.** A fit is one file per method, ``fits/<method>.pkl`` in the index directory, written to a
temporary name and renamed into place: a process killed while fitting leaves the previous fit in use. It
records the vectors' ``vector_id`` and the (id, label, digest) of every image it saw, so that it is known
to be stale once the labels or enough of the vectors have changed (:func:`staleness`), not after every
added image.

**Search.** The store's own search (any layout or backend, label filters included) gives a cosine
shortlist of :data:`SHORTLIST` images; the fitted method re-scores that shortlist exactly, on the stored
vectors. On a collection no larger than the shortlist this is the method's exact ranking.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import time
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from imagerank.errors import ImageRankError
from imagerank.ranking import DEFAULT_METHOD, METHODS, RERANKERS, Ranker, get_method, top_k
from imagerank.ranking.baselines import CosineRanker, RandomRanker
from imagerank.ranking.hybrid import HybridRanker
from imagerank.ranking.learned import POOL_LIMIT
from imagerank.ranking.rerank import Reranker
from imagerank.store.base import VectorStore, empty_results

SEARCH_SETTINGS: dict[str, dict] = {DEFAULT_METHOD: {"fallback_depth": 400}}
"""Settings a method takes where users search one query at a time: the default method re-ranks each query
with its 400 nearest images (10 ms, not 68 ms for all 1,000; why 400: `HybridRanker`, README)."""
UNSUPERVISED_FALLBACK = "dba+kreciprocal"
"""What a method that needs labels uses on an index with fewer than 2 labels: the best that needs none."""
SHORTLIST = 1000
"""Images re-scored exactly by a fitted method per query, taken from the store's cosine search."""
REFIT_FRACTION = 0.1  # a fit is stale once this fraction of the labelled, or of all, images changed
FITS_DIR = "fits"


class UnknownMethodError(ImageRankError, ValueError):
    """A ranking method name that is not registered (the message lists the registered ones)."""


@dataclass(frozen=True)
class FitInfo:
    """What a fit was made from, and when."""

    method: str
    fitted_method: str
    fitted_at: str
    seconds: float
    n_images: int
    n_labelled: int
    n_labels: int
    vector_id: str
    note: str | None = None


@dataclass(frozen=True)
class Snapshot:
    """The images a fit saw: ids, labels ('' for none) and content digests, sorted by id."""

    ids: np.ndarray
    labels: np.ndarray
    digests: np.ndarray

    @property
    def labelled(self) -> np.ndarray:
        return self.labels != ""


@dataclass
class FittedMethod:
    """A fitted ranker with what it was fitted on.

    ``products``: for the default method, every image's `HybridRanker.probe_products`, one row per
    ``snapshot`` id, so that a search looks them up instead of computing them for its whole shortlist;
    ``fingerprints``: each image's vector at a few fixed coordinates (`fingerprints`), which tell whether
    the vector is still the one the product was computed from.
    """

    info: FitInfo
    ranker: Ranker
    snapshot: Snapshot
    fingerprints: np.ndarray | None = None
    products: np.ndarray | None = None
    change_count: int | None = None
    """The store's `change_count` when fitted (None: a store without one)."""


@dataclass(frozen=True)
class FitSummary:
    """What `refit_stale` needs to know of a saved fit without reading all of it."""

    info: FitInfo
    labels: frozenset[str]
    change_count: int | None


def checked_method(name: str) -> str:
    """Return ``name`` stripped when it is a registered method or composition; raise UnknownMethodError."""
    name = name.strip()
    try:
        get_method(name)
    except ValueError as error:
        raise UnknownMethodError(str(error)) from None
    return name


def requires_labels(ranker: Ranker) -> bool:
    """Whether ``ranker`` learns from labels (re-rankers ask their base; cosine and random do not)."""
    if isinstance(ranker, Reranker):
        return ranker.base is not None and requires_labels(ranker.base)
    return not isinstance(ranker, CosineRanker | RandomRanker)


def store_snapshot(store: VectorStore) -> Snapshot:
    """The (id, label, digest) of every image in ``store``, sorted by id."""
    records = sorted(store.all_records(), key=lambda record: int(record.id or 0))
    return Snapshot(
        ids=np.fromiter((int(record.id or 0) for record in records), dtype=np.int64, count=len(records)),
        labels=np.asarray([record.label or "" for record in records], dtype=object),
        digests=np.asarray([record.digest for record in records], dtype=object),
    )


def fit_method(store: VectorStore, method: str, vector_id: str) -> FittedMethod:
    """Fit ``method`` on the labelled images of ``store``, with the rest as the unlabelled pool.

    A method that needs labels is replaced by :data:`UNSUPERVISED_FALLBACK` below 2 labels (``info.note``).
    """
    method = checked_method(method)
    change_count = getattr(store, "change_count", None)  # read first: a write after it is counted again
    snapshot = store_snapshot(store)
    labelled = snapshot.labelled
    n_labels = len(set(snapshot.labels[labelled].tolist()))
    ranker, fitted_method, note = get_method(method, **SEARCH_SETTINGS.get(method, {})), method, None
    if requires_labels(ranker) and n_labels < 2:
        fitted_method = UNSUPERVISED_FALLBACK
        ranker = get_method(fitted_method)
        note = (
            f"{method} learns from labels, and this index has {n_labels} label"
            f"{'' if n_labels == 1 else 's'}; ranking with {fitted_method} (no labels needed) instead. "
            "Put images in label folders (at least 2) to use it."
        )
    started = time.perf_counter()
    vectors = store.vectors(snapshot.ids.tolist()) if len(snapshot.ids) else np.zeros((0, store.dim))
    if (n_unlabelled := len(unlabelled := np.flatnonzero(~labelled))) > POOL_LIMIT:  # a sample, not a copy
        unlabelled = np.sort(np.random.default_rng(0).choice(unlabelled, POOL_LIMIT, replace=False))
    in_all = {"n_unlabelled": n_unlabelled} if isinstance(ranker, HybridRanker) else {}  # beyond the sample
    ranker.fit(vectors[labelled], snapshot.labels[labelled].astype(str), vectors[unlabelled], **in_all)
    info = FitInfo(
        method=method,
        fitted_method=fitted_method,
        fitted_at=datetime.now(UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 3),
        n_images=len(snapshot.ids),
        n_labelled=int(labelled.sum()),
        n_labels=n_labels,
        vector_id=vector_id,
        note=note,
    )
    if isinstance(ranker, HybridRanker):
        return FittedMethod(
            info, ranker, snapshot, fingerprints(vectors), _probe_products(ranker, vectors), change_count
        )
    return FittedMethod(info, ranker, snapshot, change_count=change_count)


def fingerprints(vectors: np.ndarray, count: int = 16) -> np.ndarray:
    """The bits of each vector at ``count`` fixed, evenly spread coordinates: no other image's embedding
    matches them all, and they cost nothing to read."""
    columns = np.linspace(0, vectors.shape[1] - 1, min(count, vectors.shape[1])).astype(np.int64)
    return np.ascontiguousarray(np.asarray(vectors, dtype=np.float32)[:, columns]).view(np.uint32)


def _probe_products(ranker: HybridRanker, vectors: np.ndarray, chunk: int = 8192) -> np.ndarray:
    products = [
        ranker.probe_products(vectors[start : start + chunk]) for start in range(0, len(vectors), chunk)
    ]
    return np.concatenate(products) if products else np.zeros((0, len(ranker.classes_)), dtype=np.float32)


def staleness(fitted: FittedMethod, current: Snapshot, vector_id: str) -> str | None:
    """Why ``fitted`` should be fitted again on ``current``, or None while it is current enough.

    Stale when the vectors come from another backbone, when a label appeared or disappeared, or when more
    than :data:`REFIT_FRACTION` of the labelled images or of all images were added, changed or removed.
    """
    if fitted.info.vector_id != vector_id:
        return "the vectors come from another backbone"
    before, now = fitted.snapshot, current
    if set(before.labels[before.labelled].tolist()) != set(now.labels[now.labelled].tolist()):
        return "the set of labels changed"
    labelled_changes = _changed(before, now, labelled_only=True)
    if labelled_changes > REFIT_FRACTION * max(before.labelled.sum(), 1):
        return f"{labelled_changes} labelled images changed"
    all_changes = _changed(before, now, labelled_only=False)
    if all_changes > REFIT_FRACTION * max(len(before.ids), 1):
        return f"{all_changes} images changed"
    return None


def surely_current(summary: FitSummary, store: VectorStore, vector_id: str) -> bool:
    """Whether :func:`staleness` would surely find nothing, known without reading every image: the same
    backbone and set of labels, and too few images written or removed since the fit (the store's
    `change_count`) to reach :data:`REFIT_FRACTION` even if each counted twice (old and new entry)."""
    now = getattr(store, "change_count", None)
    if summary.info.vector_id != vector_id or summary.change_count is None or now is None:
        return False
    if 2 * (now - summary.change_count) > REFIT_FRACTION * max(summary.info.n_labelled, 1):
        return False
    return {label for label in store.labels() if label} == summary.labels


def _changed(before: Snapshot, now: Snapshot, labelled_only: bool) -> int:
    """How many (id, label, digest) entries one snapshot has and the other lacks."""

    def entries(snapshot: Snapshot) -> set[tuple[int, str, str]]:
        keep = snapshot.labelled if labelled_only else slice(None)
        return set(
            zip(
                snapshot.ids[keep].tolist(),
                snapshot.labels[keep].tolist(),
                snapshot.digests[keep].tolist(),
                strict=True,
            )
        )

    return len(entries(before) ^ entries(now))


def fit_path(directory: Path, method: str) -> Path:
    """Where the fit of ``method`` is kept in an index directory."""
    readable = "".join(c if c.isalnum() or c in "-_" else "_" for c in method)
    digest = hashlib.sha1(method.encode()).hexdigest()[:8]
    return directory / FITS_DIR / f"{readable}-{digest}.pkl"


def save_fit(directory: Path, fitted: FittedMethod) -> Path:
    """Write ``fitted`` atomically (temporary file, fsync, rename); returns its path."""
    path = fit_path(directory, fitted.info.method)
    path.parent.mkdir(exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".fit-", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            snapshot = fitted.snapshot
            summary = {
                "info": asdict(fitted.info),
                "labels": sorted(set(snapshot.labels[snapshot.labelled].tolist())),
                "change_count": fitted.change_count,
            }
            pickle.dump(summary, file, protocol=pickle.HIGHEST_PROTOCOL)  # read alone by list_fit_summaries
            pickle.dump(
                {
                    "ranker": fitted.ranker,
                    "snapshot": asdict(snapshot),
                    "fingerprints": fitted.fingerprints,
                    "products": fitted.products,
                },
                file,
                protocol=pickle.HIGHEST_PROTOCOL,
            )
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def load_fit(directory: Path, method: str) -> FittedMethod | None:
    """The saved fit of ``method``, or None when there is none (or it cannot be read: it is then refitted).

    Fits are pickles written by imagerank into the index directory; like the index's other files, only
    open indexes you trust.
    """
    return _read_fit(fit_path(directory, method))


def list_fits(directory: Path) -> list[FittedMethod]:
    """Every readable fit saved in an index directory."""
    fits = (_read_fit(path) for path in sorted((directory / FITS_DIR).glob("*.pkl")))
    return [fitted for fitted in fits if fitted is not None]


def list_fit_summaries(directory: Path) -> list[FitSummary]:
    """What every readable fit saved in an index directory was fitted on, read without the fit itself."""
    summaries = (_read_fit(path, summary_only=True) for path in sorted((directory / FITS_DIR).glob("*.pkl")))
    return [summary for summary in summaries if summary is not None]


def _read_fit(path: Path, summary_only: bool = False) -> FittedMethod | FitSummary | None:
    """The fit saved at ``path`` (a summary, then the rest; or, as written before summaries, one dict)."""
    try:
        with path.open("rb") as file:
            summary = pickle.load(file)
            whole = summary if "ranker" in summary else None
            if summary_only and whole is None:
                return FitSummary(
                    FitInfo(**summary["info"]), frozenset(summary["labels"]), summary["change_count"]
                )
            stored = whole or pickle.load(file)
        snapshot = Snapshot(**stored["snapshot"])
        if summary_only:
            return FitSummary(
                FitInfo(**stored["info"]), frozenset(snapshot.labels[snapshot.labelled].tolist()), None
            )
        return FittedMethod(
            info=FitInfo(**summary["info"]),
            ranker=stored["ranker"],
            snapshot=snapshot,
            fingerprints=stored.get("fingerprints"),
            products=stored.get("products"),
            change_count=summary.get("change_count"),
        )
    except (
        FileNotFoundError,
        pickle.UnpicklingError,
        EOFError,
        KeyError,
        TypeError,
        AttributeError,
        ImportError,
    ):
        return None


def search_fitted(
    fitted: FittedMethod,
    store: VectorStore,
    queries: np.ndarray,
    k: int,
    labels: Sequence[str | None] | None = None,
    exclude: Collection[int] = (),
    shortlist: int = SHORTLIST,
) -> tuple[np.ndarray, np.ndarray]:
    """FAISS-style top-k ``(scores, ids)`` of ``queries`` ranked by the fitted method.

    Each query's cosine shortlist (the store's search, with its label filter) is re-scored by the method on
    the stored vectors; -1 pads rows with fewer results. ``exclude`` ids are never returned but stay in the
    neighbourhoods the method re-ranks with, unless their vector is the query's (the query itself).
    """
    queries = np.asarray(queries, dtype=np.float32).reshape(-1, store.dim)
    excluded = np.fromiter(exclude, dtype=np.int64, count=len(exclude))
    width = min(max(shortlist, k) + len(excluded), max(len(store), 1))
    _, candidate_ids = store.search(queries, width, labels)
    all_scores, all_ids = empty_results(len(queries), k)
    for row, (query, ids) in enumerate(zip(queries, candidate_ids, strict=True)):
        ids = ids[ids >= 0]
        if not len(ids):
            continue
        candidates = store.vectors(ids.tolist())
        hidden = np.isin(ids, excluded)
        itself = hidden.copy()
        itself[hidden] = (candidates[hidden] == query).all(axis=1)
        ids, candidates, hidden = ids[~itself], candidates[~itself], hidden[~itself]
        if hidden.all():
            continue
        if fitted.products is None or fitted.fingerprints is None:
            scores = fitted.ranker.score(query[None, :], candidates)
        else:
            products = candidate_products(fitted, ids, candidates)
            scores = fitted.ranker.score(query[None, :], candidates, products)
        scores, order = top_k(np.where(hidden, -np.inf, scores), min(k, int((~hidden).sum())))
        all_scores[row, : order.shape[1]] = scores[0]
        all_ids[row, : order.shape[1]] = ids[order[0]]
    return all_scores, all_ids


def candidate_products(fitted: FittedMethod, ids: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """The `HybridRanker.probe_products` of the images ``ids`` (with these ``vectors``): kept with the fit
    for the images it saw whose vector is unchanged since (the same `fingerprints`); computed for the
    others (added, or embedded again, after the fit)."""
    known_ids, products = fitted.snapshot.ids, fitted.products
    positions = np.minimum(np.searchsorted(known_ids, ids), max(len(known_ids) - 1, 0))
    known = (known_ids[positions] == ids) if len(known_ids) else np.zeros(len(ids), dtype=bool)
    known[known] = (fingerprints(vectors[known]) == fitted.fingerprints[positions[known]]).all(axis=1)
    result = np.empty((len(ids), products.shape[1]), dtype=products.dtype)
    result[known] = products[positions[known]]
    if not known.all():
        result[~known] = fitted.ranker.probe_products(vectors[~known])
    return result


def describe_methods() -> dict[str, list[str]]:
    """The registered rankers and re-rankers, for error messages and the API."""
    return {"rankers": list(METHODS), "rerankers": list(RERANKERS)}
