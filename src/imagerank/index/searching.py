"""The reading half of `Index`: search by image, vector, id or text, with the index's fitted ranking
methods. `Index` inherits it; its state (the fits, the fitted text ranker) lives on the index.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imagerank.errors import ImageRankError, UnknownImageError
from imagerank.index.fitted import (
    DEFAULT_METHOD,
    FittedMethod,
    checked_method,
    fit_method,
    fit_path,
    list_fit_summaries,
    list_fits,
    load_fit,
    save_fit,
    search_fitted,
    staleness,
    store_snapshot,
    surely_current,
)
from imagerank.ranking import feedback_refined_scores
from imagerank.store.base import empty_results, write_json_atomically
from imagerank.text import create_text_ranker
from imagerank.text.base import TextRanker, checked_text


@dataclass
class _FittedTextRanker:
    """A text ranker fitted on the index as it was at `version` (its size, store generation and count of
    changes, which counts label changes too)."""

    version: tuple[int, int | None, int | None]
    ids: np.ndarray
    labels: np.ndarray
    vectors: np.ndarray
    """The stored vectors of ``ids``, the same array the ranker was fitted on (not a copy)."""
    ranker: TextRanker


class Searching:
    """`Index` methods that search and fit ranking methods."""

    @property
    def default_method(self) -> str:
        """The ranking method `search` uses unless told otherwise (set with `set_default_method`)."""
        return str(self.manifest.get("method") or DEFAULT_METHOD)

    def set_default_method(self, method: str) -> None:
        """Make ``method`` (a registered name or composition) this index's default ranking method."""
        self.manifest["method"] = checked_method(method)
        write_json_atomically(self.directory / "manifest.json", self.manifest)

    def search(
        self,
        query: np.ndarray | Image.Image | str | Path,
        k: int = 10,
        labels: Sequence[str | None] | None = None,
        method: str | None = None,
        exclude: Collection[int] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) like FAISS: arrays of shape (n_queries, k), best first, -1 where none.

        `query` is an image, an image path, one vector, or a (n, dim) array of vectors. `labels` restricts
        results to images with those labels (None among them: the unlabelled images). `method` is a
        ranking method (`imagerank.ranking.list_methods`, compositions such as ``probe+qe``); None is the
        index's `default_method`. With ``cosine`` the scores are cosine similarities; other methods
        re-score the store's cosine shortlist (see `imagerank.index.fitted`) and their scores are their own.
        `exclude` ids are never returned; a method still re-ranks with them as part of the collection
        (their neighbourhoods), except an excluded image whose vector is the query's: the query itself.
        """
        self._check_labels(labels)
        return self._ranked(self._query_vectors(query), k, labels, method, exclude)

    def search_by_id(
        self,
        image_id: int,
        k: int = 10,
        labels: Sequence[str | None] | None = None,
        method: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Images most like an indexed one ("more like this"), the image itself left out."""
        self._check_labels(labels)
        return self._ranked(self.store.vectors([image_id]), k, labels, method, exclude=(image_id,))

    def search_text(
        self,
        text: str,
        k: int = 10,
        labels: Sequence[str | None] | None = None,
        relevant: Sequence[int] = (),
        not_relevant: Sequence[int] = (),
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for a text query, shaped (1, k) like `search`, -1 where none.

        The text ranker follows the backbone (`imagerank.text.create_text_ranker`). It is fitted on the
        index's vectors and labels at the first text search, and again once the index has changed.
        `labels` restricts results as in `search`. Ids marked `relevant` or `not_relevant` (relevance
        feedback, for example on the first page) refine the text's scores with the images' vectors
        (`imagerank.ranking.feedback_refined_scores`); those marked not relevant are never returned.
        Raises TextQueryError for an empty or too long text, UnknownImageError for a marked id that is
        not indexed.
        """
        text = checked_text(text)
        self._check_labels(labels)
        fitted = self._fitted_text_ranker()
        relevant_rows, nonrelevant_rows = _rows_of(fitted.ids, relevant), _rows_of(fitted.ids, not_relevant)
        if not len(fitted.ids):
            return empty_results(1, k)
        scores = fitted.ranker.score(text)
        if len(relevant_rows) or len(nonrelevant_rows):
            scores = feedback_refined_scores(scores, fitted.vectors, relevant_rows, nonrelevant_rows)
        scores = np.asarray(scores, dtype=np.float32)
        candidates = np.flatnonzero(np.isfinite(scores))  # all but the images marked not relevant
        if labels:
            wanted = [label or "" for label in labels]
            candidates = candidates[np.isin(fitted.labels[candidates], wanted)]
        top = candidates[np.argsort(-scores[candidates], kind="stable")[:k]]
        ranked_scores, ranked_ids = empty_results(1, k)
        ranked_scores[0, : len(top)], ranked_ids[0, : len(top)] = scores[top], fitted.ids[top]
        return ranked_scores, ranked_ids

    def fitted(self, method: str | None = None) -> FittedMethod:
        """The fit of ``method`` (default: `default_method`): kept in memory while its file is the one
        this index read or wrote (another process, such as `imagerank index` or `imagerank label` beside a
        server, may have fitted it again since), else read from the index directory, else fitted now and
        saved there."""
        method = checked_method(method or self.default_method)
        kept = self._fits.get(method)
        if kept is not None and kept[1] == _file_version(fit_path(self.directory, method)):
            return kept[0]
        fitted = load_fit(self.directory, method)
        if fitted is None or fitted.info.vector_id != self.manifest.get("vector_id"):
            return self.fit(method)
        self._fits[method] = (fitted, _file_version(fit_path(self.directory, method)))
        return fitted

    def fit(self, method: str | None = None) -> FittedMethod:
        """Fit ``method`` (default: `default_method`) on this index's labels now, and save the fit."""
        method = checked_method(method or self.default_method)
        fitted = fit_method(self.store, method, str(self.manifest.get("vector_id")))
        self._fits[method] = (fitted, _file_version(save_fit(self.directory, fitted)))
        return fitted

    def refit_stale(self) -> list[FittedMethod]:
        """Fit again the default method and every saved fit whose labels or vectors changed enough (see
        `fitted.staleness`); the default method is fitted if it never was. Returns the new fits."""
        if not len(self.store):
            return []
        vector_id = str(self.manifest.get("vector_id"))
        saved = {summary.info.method: summary for summary in list_fit_summaries(self.directory)}
        current = None  # every image's (id, label, digest), read only when the store's counts cannot tell
        refitted = []
        for method in dict.fromkeys([self.default_method, *saved]):
            summary = saved.get(method)
            if method == "cosine" or (summary is not None and surely_current(summary, self.store, vector_id)):
                continue
            fitted = load_fit(self.directory, method) if summary is not None else None
            current = current or store_snapshot(self.store)
            if fitted is None or staleness(fitted, current, vector_id):
                refitted.append(self.fit(method))
        return refitted

    def _ranked(
        self,
        queries: np.ndarray,
        k: int,
        labels: Sequence[str | None] | None,
        method: str | None,
        exclude: Collection[int],
    ) -> tuple[np.ndarray, np.ndarray]:
        method = checked_method(method or self.default_method)
        if method == "cosine":
            scores, ids = self.store.search(queries, k + len(exclude), labels)
            if not exclude:
                return scores, ids
            return _without(scores, ids, np.fromiter(exclude, dtype=np.int64, count=len(exclude)), k)
        return search_fitted(self.fitted(method), self.store, queries, k, labels, exclude)

    def ranking_info(self) -> dict:
        """The default method and every saved fit: what it was fitted on, when, and whether it is stale."""
        current = store_snapshot(self.store)
        vector_id = str(self.manifest.get("vector_id"))
        fits = []
        for fitted in list_fits(self.directory):
            reason = staleness(fitted, current, vector_id)
            fits.append({**vars(fitted.info), "stale": reason is not None, "stale_reason": reason})
        labelled = current.labelled
        return {
            "default_method": self.default_method,
            "labelled_images": int(labelled.sum()),
            "unlabelled_images": int((~labelled).sum()),
            "labels": len(set(current.labels[labelled].tolist())),
            "fits": fits,
        }

    def _fitted_text_ranker(self) -> _FittedTextRanker:
        version = (
            len(self.store),
            *(getattr(self.store, name, None) for name in ("generation", "change_count")),
        )
        if self._text is None or self._text.version != version:
            records = sorted(self.store.all_records(), key=lambda record: int(record.id or 0))
            ids = np.fromiter((int(record.id or 0) for record in records), dtype=np.int64, count=len(records))
            labels = [record.label for record in records]
            ranker = create_text_ranker(self.model, weights=self._weights)
            vectors = np.zeros((0, self.store.dim), dtype=np.float32)
            if len(ids):
                vectors = np.asarray(self.store.vectors(ids.tolist()), dtype=np.float32)
                ranker.fit(vectors, labels)
            self._text = _FittedTextRanker(
                version, ids, np.asarray([label or "" for label in labels], dtype=object), vectors, ranker
            )
        return self._text

    def _query_vectors(self, query: np.ndarray | Image.Image | str | Path) -> np.ndarray:
        if isinstance(query, np.ndarray):
            vectors = np.asarray(query, dtype=np.float32)
            if vectors.shape[-1] != self.store.dim:
                raise ImageRankError(
                    f"query vectors have dimension {vectors.shape[-1]}, index has {self.store.dim}"
                )
            return vectors.reshape(-1, self.store.dim)
        return self.embedder.encode([query])


def _without(
    scores: np.ndarray, ids: np.ndarray, excluded: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Results without the ``excluded`` ids, each row cut or padded (as FAISS pads) to ``k``."""
    kept_scores, kept_ids = empty_results(len(ids), k)
    for row, keep in enumerate(~np.isin(ids, excluded)):
        count = min(int(keep.sum()), k)
        kept_scores[row, :count], kept_ids[row, :count] = scores[row][keep][:count], ids[row][keep][:count]
    return kept_scores, kept_ids


def _rows_of(sorted_ids: np.ndarray, wanted: Sequence[int]) -> np.ndarray:
    """The positions of the ``wanted`` ids in ``sorted_ids``; UnknownImageError naming those not in it."""
    wanted_ids = np.asarray(list(wanted), dtype=np.int64)
    rows = np.minimum(np.searchsorted(sorted_ids, wanted_ids), max(len(sorted_ids) - 1, 0))
    found = sorted_ids[rows] == wanted_ids if len(sorted_ids) else np.zeros(len(wanted_ids), dtype=bool)
    if not found.all():
        raise UnknownImageError(f"no indexed image has the id(s) {sorted(set(wanted_ids[~found].tolist()))}")
    return rows


def _file_version(path: Path) -> tuple[int, int, int] | None:
    """Which file is at ``path`` (None when there is none): a fit is only ever replaced whole, by a rename,
    so another inode, time or size means another fit."""
    try:
        status = path.stat()
    except FileNotFoundError:
        return None
    return status.st_ino, status.st_mtime_ns, status.st_size
