"""`Index`: a folder of images embedded with one backbone, kept in a store, searchable by image or vector.

Indexing is incremental: a file whose size and modification time are unchanged is not read again, a file
whose content changed is embedded again (keeping its id), and files gone from the folder are dropped. Each
batch is committed on its own, so an interrupted run keeps what it finished and the next run resumes.
A file that could not be decoded is remembered (table ``skipped`` of ``metadata.sqlite``: its size,
modification time and reason) and reported again without being read until it changes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image

from imagerank import __version__
from imagerank.decoding import IMAGE_EXTENSIONS, file_digest, scan_image_files
from imagerank.embedding import Embedder, create_embedder
from imagerank.errors import BadImageError, ImageRankError, ModelMismatchError, UnknownLabelError
from imagerank.fitted import (
    DEFAULT_METHOD,
    FittedMethod,
    checked_method,
    fit_method,
    list_fits,
    load_fit,
    save_fit,
    search_fitted,
    staleness,
    store_snapshot,
)
from imagerank.models import DEFAULT_MODEL
from imagerank.store import (
    DATABASE,
    ImageRecord,
    VectorStore,
    empty_results,
    open_store,
    read_manifest,
    write_json_atomically,
)
from imagerank.text import TextRanker, checked_text, create_text_ranker

FORMAT = "imagerank-index"
FORMAT_VERSION = 1
UNLABELLED_FOLDERS = frozenset({"unlabelled", "unlabeled"})
"""Images in a folder of one of these names (or directly in the indexed folder) have no label."""
_EXIF_ORIENTATION = 0x0112
# Record paths of images uploaded over HTTP begin with this; the rest is relative to the uploads folder. A
# scanned file's relative path never holds "//", so an upload can never be taken for a file of the folder.
UPLOADS_PREFIX = "uploads://"


@dataclass
class IndexReport:
    """What one indexing run did."""

    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[BadImageError] = field(default_factory=list)
    fitted: list[FittedMethod] = field(default_factory=list)
    known_bad: list[str] = field(default_factory=list)
    """Of the skipped files, those skipped by an earlier run and unchanged since: not read again."""

    def summary(self) -> str:
        known = f" ({len(self.known_bad)} as before, not read again)" if self.known_bad else ""
        return (
            f"{len(self.indexed)} indexed, {len(self.unchanged)} unchanged, "
            f"{len(self.removed)} removed, {len(self.skipped)} skipped{known}"
        )


@dataclass
class _FittedTextRanker:
    """A text ranker fitted on the index as it was at `version` (its size and store generation)."""

    version: tuple[int, int | None]
    ids: np.ndarray
    labels: np.ndarray
    ranker: TextRanker


class Index:
    """An on-disk image index. Create it with `Index.create`, reopen it with `Index.open`.

    Example:
        >>> index = Index.create("photos.index", model="mobilenet_v2")
        >>> index.sync("photos/")
        >>> scores, ids = index.search("query.jpg", k=10)
        >>> index.records(ids[0])
    """

    def __init__(
        self,
        directory: Path,
        manifest: dict,
        store: VectorStore,
        embedder: Embedder | None = None,
        weights: str | Path | None = None,
        engine: str = "auto",
        device: str = "cpu",
        address: str | None = None,
    ) -> None:
        self.directory = directory
        self.manifest = manifest
        self.store = store
        self._embedder = embedder
        self._weights = weights
        self._engine = engine
        self._device = device
        self._address = address
        self._fits: dict[str, FittedMethod] = {}
        self._text: _FittedTextRanker | None = None

    @classmethod
    def create(
        cls,
        directory: str | Path,
        model: str = DEFAULT_MODEL,
        weights: str | Path | None = None,
        engine: str = "auto",
        device: str = "cpu",
        embedder: Embedder | None = None,
        index_type: str = "auto",
        store: str | None = None,
        address: str | None = None,
    ) -> Index:
        """A new empty index at `directory` (which must not hold an index yet).

        `index_type` is the vector layout (`imagerank.ann.INDEX_TYPES`; ``auto`` picks by size); `store`
        where the vectors live: None for the embedded FAISS + SQLite store in `directory`,
        ``milvus-lite:PATH.db`` or ``milvus://HOST:PORT/COLLECTION``. `address` is the Ray cluster for
        ``engine="ray"``.
        """
        directory = Path(directory)
        if (directory / "manifest.json").exists():
            raise ImageRankError(f"an index already exists at {directory}; use Index.open")
        embedder = embedder or create_embedder(
            model, weights=weights, engine=engine, device=device, address=address
        )
        spec = embedder.spec
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "model": spec.name,
            "weights_id": spec.weights_id,
            "vector_id": spec.vector_id(),
            "weights_file": str(Path(weights).resolve()) if weights else None,
            "dim": spec.dim,
            "metric": "cosine",
            "preprocessing": spec.preprocessing(),
            "index_type": index_type,
            "store": _store_location(store),
            "imagerank_version": __version__,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "root": None,
        }
        directory.mkdir(parents=True, exist_ok=True)
        opened = open_store(manifest["store"], directory, spec.dim, index_type)
        write_json_atomically(directory / "manifest.json", manifest)
        weights_file = manifest["weights_file"]
        return cls(directory, manifest, opened, embedder, weights_file, engine, device, address)

    @classmethod
    def open(
        cls,
        directory: str | Path,
        weights: str | Path | None = None,
        engine: str = "auto",
        device: str = "cpu",
        embedder: Embedder | None = None,
        index_type: str | None = None,
        address: str | None = None,
    ) -> Index:
        """Open an existing index. The backbone is loaded only when an image has to be embedded.

        An `index_type` other than the index's own switches its layout (rebuilt from the stored vectors).
        """
        directory = Path(directory)
        manifest = read_manifest(directory)
        if manifest.get("format") != FORMAT:
            raise ImageRankError(f"{directory} is not an imagerank index")
        layout = index_type or manifest.get("index_type", "auto")
        store = open_store(manifest.get("store"), directory, int(manifest["dim"]), layout)
        if layout != manifest.get("index_type", "auto"):
            manifest["index_type"] = layout
            write_json_atomically(directory / "manifest.json", manifest)
        weights = weights or manifest.get("weights_file")
        index = cls(directory, manifest, store, embedder, weights, engine, device, address)
        if embedder is not None:
            index._check_embedder(embedder)
        return index

    @classmethod
    def open_or_create(
        cls,
        directory: str | Path,
        model: str | None = None,
        weights: str | Path | None = None,
        engine: str = "auto",
        device: str = "cpu",
        index_type: str | None = None,
        store: str | None = None,
        address: str | None = None,
    ) -> Index:
        """Open the index at `directory`, or create it with `model` (default: mobilenet_v2)."""
        if (Path(directory) / "manifest.json").exists():
            index = cls.open(
                directory,
                weights=weights,
                engine=engine,
                device=device,
                index_type=index_type,
                address=address,
            )
            if store is not None and _store_location(store) != index.manifest.get("store"):
                current = index.manifest.get("store") or "faiss"
                raise ImageRankError(
                    f"the index at {directory} keeps its vectors in {current}; it cannot move to {store} "
                    f"(use another --index directory)"
                )
            if model is not None and model != index.model:
                raise ModelMismatchError(
                    f"the index at {directory} holds {index.model} vectors; it cannot take {model} "
                    f"vectors (use another --index directory)"
                )
            return index
        return cls.create(
            directory,
            model=model or DEFAULT_MODEL,
            weights=weights,
            engine=engine,
            device=device,
            index_type=index_type or "auto",
            store=store,
            address=address,
        )

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self.store)

    @property
    def model(self) -> str:
        return str(self.manifest["model"])

    @property
    def root(self) -> Path | None:
        root = self.manifest.get("root")
        return Path(root) if root else None

    @property
    def embedder(self) -> Embedder:
        """The backbone that made this index's vectors, loaded on first use."""
        if self._embedder is None:
            embedder = create_embedder(
                self.model,
                weights=self._weights,
                engine=self._engine,
                device=self._device,
                address=self._address,
            )
            self._check_embedder(embedder)
            self._embedder = embedder
        return self._embedder

    def sync(
        self,
        root: str | Path,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        fit: bool = True,
    ) -> IndexReport:
        """Bring the index in line with the folder: embed new and changed files, drop deleted ones.

        With ``fit``, the default ranking method (and every other method fitted before) is then fitted
        again if the labels or vectors changed enough since its last fit (see `refit_stale`).
        """
        root = Path(root).resolve()
        # Scan first: a missing folder must fail before the index is tied to it as its root.
        scan = scan_image_files(root, extensions)
        self._claim_root(root)
        report = IndexReport(skipped=list(scan.problems))
        known = {record.path: record for record in self.store.all_records()}
        present = {_relative(path, root) for path in scan.files}
        with _SkippedFiles(self.directory / DATABASE) as skipped_before:
            bad = skipped_before.read()
            changed = []
            for path in scan.files:
                relative = _relative(path, root)
                record = known.get(relative)
                if record is not None and _same_stat(record, path):
                    report.unchanged.append(record.path)
                elif relative in bad and bad[relative][:2] == _stat_key(path):
                    report.skipped.append(BadImageError(path, bad[relative][2]))
                    report.known_bad.append(relative)
                else:
                    changed.append(path)
            first_skipped = len(report.skipped)
            self._embed_and_store(changed, root, batch_size, show_progress_bar, report)
            skipped_before.remember(
                [
                    (_relative(error.path, root), *_stat_key(error.path), error.reason)
                    for error in report.skipped[first_skipped:]
                    if error.path.is_file()
                ]
            )
            indexed = set(report.indexed)
            skipped_before.forget([path for path in bad if path not in present or path in indexed])
        gone = [
            record
            for path, record in known.items()
            if path not in present and not path.startswith(UPLOADS_PREFIX)  # uploads live elsewhere
        ]
        self.store.delete([record.id for record in gone if record.id is not None])
        report.removed = [record.path for record in gone]
        self.store.flush()
        if fit:
            report.fitted = self.refit_stale()
        return report

    def add(
        self,
        paths: Sequence[str | Path],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        fit: bool = True,
    ) -> IndexReport:
        """Embed and store the given files (under the index's root; the first call sets the root).

        With ``fit``, stale fitted methods are fitted again afterwards, as after `sync`.
        """
        files = [Path(path).absolute() for path in paths]
        root = self.root or Path(os.path.commonpath([path.parent for path in files] or [Path.cwd()]))
        root = self._claim_root(root)
        report = IndexReport()
        self._embed_and_store(files, root, batch_size, show_progress_bar, report)
        self.store.flush()
        if fit:
            report.fitted = self.refit_stale()
        return report

    @property
    def default_method(self) -> str:
        """The ranking method `search` uses unless told otherwise (set with `set_default_method`)."""
        return str(self.manifest.get("method") or DEFAULT_METHOD)

    def set_default_method(self, method: str) -> None:
        """Make ``method`` (a registered name or composition) this index's default ranking method."""
        self.manifest["method"] = checked_method(method)
        write_json_atomically(self.directory / "manifest.json", self.manifest)

    @property
    def uploads_folder(self) -> Path:
        """Where uploaded images are kept: the folder the manifest names, else <index>/uploads."""
        folder = self.manifest.get("uploads")
        return Path(folder) if folder else self.directory / "uploads"

    def claim_uploads_folder(self, folder: str | Path) -> Path:
        """Make `folder` this index's uploads folder (recorded in the manifest) and return it resolved.

        Raises:
            ImageRankError: the folder is inside the indexed folder (a sync would index its files a second
                time), or the index already keeps uploads elsewhere.
        """
        folder = Path(folder).resolve()
        if self.root is not None and folder.is_relative_to(self.root):
            raise ImageRankError(
                f"the uploads folder {folder} is inside the indexed folder {self.root}; choose one outside it"
            )
        current = self.uploads_folder.resolve()
        if folder != current and self.upload_count():
            raise ImageRankError(
                f"the index at {self.directory} keeps its uploads in {current}, not {folder}; "
                f"use that folder (or another --index directory)"
            )
        if folder != current or "uploads" not in self.manifest:
            self.manifest["uploads"] = str(folder)
            write_json_atomically(self.directory / "manifest.json", self.manifest)
        return folder

    def add_uploads(self, paths: Sequence[Path], batch_size: int = 32) -> IndexReport:
        """Embed and store files of the uploads folder (the label is the folder directly under it), then
        fit stale ranking methods again (a new label makes them stale)."""
        folder = self.uploads_folder.resolve()
        report = IndexReport()
        self._embed_and_store(
            [Path(path).resolve() for path in paths], folder, batch_size, False, report, prefix=UPLOADS_PREFIX
        )
        self.store.flush()
        report.fitted = self.refit_stale()
        return report

    def upload_count(self) -> int:
        """How many of the indexed images were uploaded (rather than found in the indexed folder)."""
        return sum(record.path.startswith(UPLOADS_PREFIX) for record in self.store.all_records())

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
        re-score the store's cosine shortlist (see `imagerank.fitted`) and their scores are their own.
        `exclude` ids are never returned, nor seen by a method as candidates.
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
        self, text: str, k: int = 10, labels: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) for a text query, shaped (1, k) like `search`, -1 where none.

        The text ranker follows the backbone (`imagerank.text.create_text_ranker`). It is fitted on the
        index's vectors and labels at the first text search, and again once the index has changed.
        `labels` restricts results as in `search`. Raises TextQueryError for an empty or too long text.
        """
        text = checked_text(text)
        self._check_labels(labels)
        fitted = self._fitted_text_ranker()
        if not len(fitted.ids):
            return empty_results(1, k)
        scores = np.asarray(fitted.ranker.score(text), dtype=np.float32)
        candidates = np.arange(len(fitted.ids))
        if labels:
            wanted = [label or "" for label in labels]
            candidates = candidates[np.isin(fitted.labels, wanted)]
        top = candidates[np.argsort(-scores[candidates], kind="stable")[:k]]
        ranked_scores, ranked_ids = empty_results(1, k)
        ranked_scores[0, : len(top)], ranked_ids[0, : len(top)] = scores[top], fitted.ids[top]
        return ranked_scores, ranked_ids

    def fitted(self, method: str | None = None) -> FittedMethod:
        """The fit of ``method`` (default: `default_method`): kept in memory, else read from the index
        directory, else fitted now and saved there."""
        method = checked_method(method or self.default_method)
        if method not in self._fits:
            fitted = load_fit(self.directory, method)
            if fitted is None or fitted.info.vector_id != self.manifest.get("vector_id"):
                fitted = self.fit(method)
            self._fits[method] = fitted
        return self._fits[method]

    def fit(self, method: str | None = None) -> FittedMethod:
        """Fit ``method`` (default: `default_method`) on this index's labels now, and save the fit."""
        method = checked_method(method or self.default_method)
        fitted = fit_method(self.store, method, str(self.manifest.get("vector_id")))
        save_fit(self.directory, fitted)
        self._fits[method] = fitted
        return fitted

    def refit_stale(self) -> list[FittedMethod]:
        """Fit again the default method and every saved fit whose labels or vectors changed enough (see
        `imagerank.fitted.staleness`); the default method is fitted if it never was. Returns the new fits."""
        if not len(self.store):
            return []
        current = store_snapshot(self.store)
        vector_id = str(self.manifest.get("vector_id"))
        saved = {fitted.info.method: fitted for fitted in list_fits(self.directory)}
        refitted = []
        for method in dict.fromkeys([self.default_method, *saved]):
            fitted = saved.get(method)
            if method != "cosine" and (fitted is None or staleness(fitted, current, vector_id)):
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

    def records(self, ids: Iterable[int]) -> list[ImageRecord]:
        """Metadata for ids (as returned by `search`); -1 entries are ignored."""
        return self.store.records([int(i) for i in ids if int(i) >= 0])

    def path_of(self, record: ImageRecord) -> Path:
        """The absolute path of an indexed image."""
        if record.path.startswith(UPLOADS_PREFIX):
            return self.uploads_folder / record.path.removeprefix(UPLOADS_PREFIX)
        if self.root is None:
            raise ImageRankError("this index has no root folder yet")
        return self.root / record.path

    def info(self) -> dict:
        """Model, count, labels, size on disk, the store (layout, measured recall) and the fitted methods."""
        size = sum(path.stat().st_size for path in self.directory.rglob("*") if path.is_file())
        return {
            "directory": str(self.directory),
            "model": self.model,
            "weights_id": self.manifest.get("weights_id"),
            "dim": self.manifest["dim"],
            "root": self.manifest.get("root"),
            "count": len(self),
            "labels": {str(label): count for label, count in self.store.labels().items()},
            "uploads": {"folder": str(self.uploads_folder), "count": self.upload_count()},
            "size_bytes": size,
            "store": self.store.describe(),
            "ranking": self.ranking_info(),
            "imagerank_version": self.manifest.get("imagerank_version"),
            "created": self.manifest.get("created"),
        }

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

    def close(self) -> None:
        self.store.close()

    def _fitted_text_ranker(self) -> _FittedTextRanker:
        version = (len(self.store), getattr(self.store, "generation", None))
        if self._text is None or self._text.version != version:
            records = sorted(self.store.all_records(), key=lambda record: int(record.id or 0))
            ids = np.fromiter((int(record.id or 0) for record in records), dtype=np.int64, count=len(records))
            labels = [record.label for record in records]
            ranker = create_text_ranker(self.model, weights=self._weights)
            if len(ids):
                ranker.fit(self.store.vectors(ids.tolist()), labels)
            self._text = _FittedTextRanker(
                version, ids, np.asarray([label or "" for label in labels], dtype=object), ranker
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

    def _check_labels(self, labels: Sequence[str | None] | None) -> None:
        if not labels:
            return
        known = self.store.labels()
        unknown = [label for label in labels if label not in known]
        if unknown:
            names = sorted(str(label) for label in known if label is not None)
            shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
            raise UnknownLabelError(
                f"no indexed image has the label {unknown[0]!r}; the labels are: {shown or '(none)'}"
            )

    def _check_embedder(self, embedder: Embedder) -> None:
        spec = embedder.spec
        if spec.vector_id() != self.manifest.get("vector_id"):
            raise ModelMismatchError(
                f"the index at {self.directory} holds vectors of {self.manifest.get('vector_id')} "
                f"(model, weights, preprocessing), not of {spec.vector_id()}: vectors from different "
                f"models or preprocessing cannot be mixed"
            )

    def _claim_root(self, root: Path) -> Path:
        root = root.resolve()
        if self.root is not None and self.root != root:
            raise ImageRankError(
                f"the index at {self.directory} was built from {self.root}, not {root}; "
                f"use another --index directory for another folder"
            )
        if self.root is None:
            self.manifest["root"] = str(root)
            write_json_atomically(self.directory / "manifest.json", self.manifest)
        return root

    def _embed_and_store(
        self,
        files: list[Path],
        root: Path,
        batch_size: int,
        show_progress_bar: bool,
        report: IndexReport,
        prefix: str = "",
    ) -> None:
        if not files:
            return
        for batch in self.embedder.iter_encode_files(files, batch_size, show_progress_bar):
            report.skipped.extend(batch.errors)
            records, keep = [], []
            for position, path in enumerate(batch.paths):
                try:
                    records.append(_record_for(path, root, prefix))
                    keep.append(position)
                except OSError as error:
                    report.skipped.append(BadImageError(path, f"cannot read: {error.strerror or error}"))
            self.store.upsert(records, batch.vectors[keep])
            report.indexed.extend(record.path for record in records)


def _without(
    scores: np.ndarray, ids: np.ndarray, excluded: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Results without the ``excluded`` ids, each row cut or padded (as FAISS pads) to ``k``."""
    kept_scores, kept_ids = empty_results(len(ids), k)
    for row, keep in enumerate(~np.isin(ids, excluded)):
        count = min(int(keep.sum()), k)
        kept_scores[row, :count], kept_ids[row, :count] = scores[row][keep][:count], ids[row][keep][:count]
    return kept_scores, kept_ids


def _store_location(store: str | None) -> str | None:
    """How the manifest records a store: None for the embedded one, Milvus Lite paths made absolute."""
    if store in (None, "", "faiss"):
        return None
    if store.startswith("milvus-lite:"):
        return "milvus-lite:" + str(Path(store.removeprefix("milvus-lite:")).resolve())
    return store


def _relative(path: Path, root: Path) -> str:
    try:
        return path.absolute().relative_to(root).as_posix()
    except ValueError:
        raise BadImageError(path, f"is outside the indexed folder {root}") from None


class _SkippedFiles:
    """Files an indexing run could not use, with the size and modification time they had then.

    Kept in the index's SQLite file (its own table, whatever store holds the vectors) so the next run
    reports them without decoding them again, until they change.
    """

    def __init__(self, database: Path) -> None:
        self._db = sqlite3.connect(database, timeout=30)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL)"
        )

    def __enter__(self) -> _SkippedFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._db.close()

    def read(self) -> dict[str, tuple[int, int, str]]:
        rows = self._db.execute("SELECT path, size, mtime_ns, reason FROM skipped")
        return {path: (size, mtime_ns, reason) for path, size, mtime_ns, reason in rows}

    def remember(self, rows: list[tuple[str, int, int, str]]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?)", rows)

    def forget(self, paths: list[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM skipped WHERE path = ?", [(path,) for path in paths])


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _same_stat(record: ImageRecord, path: Path) -> bool:
    stat = path.stat()
    return stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns


def _record_for(path: Path, root: Path, prefix: str = "") -> ImageRecord:
    """Metadata of an image file: relative path (after `prefix`), label (parent folder), digest, size, mtime,
    oriented size."""
    stat = path.stat()
    relative = _relative(path, root)
    parent = Path(relative).parent
    width, height = _oriented_size(path)
    return ImageRecord(
        path=prefix + relative,
        label=parent.name if parent != Path(".") and parent.name not in UNLABELLED_FOLDERS else None,
        digest=file_digest(path),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        width=width,
        height=height,
    )


def _oriented_size(path: Path) -> tuple[int, int]:
    """Width and height as displayed, read from the header (EXIF rotation by 90 degrees swaps them)."""
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):
            return height, width
    return width, height
