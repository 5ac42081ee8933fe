"""The on-disk index store: SQLite metadata (the source of truth, vectors included) plus a FAISS index.

Layout of an index directory:
    manifest.json          model, weights id, dimension, preprocessing, index type (written atomically)
    metadata.sqlite        one row per image: path, label, digest, size, mtime, width, height, vector
    vectors-<gen>.faiss    FAISS index as of generation <gen> (the last flush), a cache of SQLite
    vectors-<gen>.json     its layout (`imagerank.store.ann.IndexPlan`)

Every change is one SQLite transaction that bumps the generation and logs the ids it touched (table
``changes``). A FAISS copy that is behind the database, in another process or in a file written by an
earlier flush, catches up by replaying the logged ids from SQLite, so a server stays current while an
indexer writes without rebuilding a million-vector index; only when the log does not reach back far enough
(it is trimmed at each flush) is the copy loaded from the newest file or rebuilt. The FAISS file is written
to a temporary name and renamed into place. A process killed at any moment therefore leaves a readable
index.

The FAISS layout (exact, compressed or approximate) comes from `imagerank.store.ann.plan_index`; with ``auto``
it changes as the collection grows, and the store rebuilds the FAISS copy when it does. For approximate
layouts the store measures recall@10 against exact search on a sample of its own vectors after each build
and again when the collection has grown by a quarter, and `describe()` reports it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from imagerank.errors import ImageRankError
from imagerank.store.ann import (
    RECALL_K,
    RECALL_QUERIES,
    IndexPlan,
    build_index,
    plan_index,
    recall_at_k,
    search_parameters,
)
from imagerank.store.base import DATABASE, SCHEMA_VERSION, ImageRecord, empty_results, write_json_atomically

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL UNIQUE,
    label TEXT,
    digest TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS images_label ON images(label);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (generation INTEGER NOT NULL, id INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS changes_generation ON changes(generation);
"""
_DEAD = -1
"""The id an HNSW layout's removed vectors are renamed to (FAISS cannot remove them from the graph)."""
_MAX_DEAD_FRACTION = 0.2
_RECALL_STALE_GROWTH = 1.25
_EXACT_SUBSET_MAX = 4096
"""Label-filtered searches over at most this many images of an approximate layout are exact."""

_RECORD_COLUMNS = "path, label, digest, size, mtime_ns, width, height, id"


class FaissStore:
    """Inner-product search over L2-normalised vectors (cosine), FAISS in memory, SQLite on disk.

    `index_type` is one of `imagerank.store.ann.INDEX_TYPES` (``auto`` picks by collection size).

    Safe to share between threads: searches and writes are serialised by a lock, and SQLite runs in
    write-ahead-log mode so other processes can read while one writes. The in-memory FAISS copy knows the
    generation it reflects; when another connection (another process) has committed since, the copy is
    reloaded (from that generation's file, else from SQLite) before it is searched, changed or written.
    """

    def __init__(self, directory: str | Path, dim: int, index_type: str = "auto") -> None:
        self.directory = Path(directory)
        self.dim = dim
        self.index_type = index_type
        plan_index(index_type, 0)  # an unknown type fails before anything is opened
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.directory / DATABASE, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO state VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        self._db.execute("INSERT OR IGNORE INTO state VALUES ('generation', 0)")
        self._db.execute("INSERT OR IGNORE INTO state VALUES ('layouts', 0)")
        self._db.execute(
            "INSERT OR IGNORE INTO state SELECT 'log_start', value FROM state WHERE key = 'generation'"
        )
        self._not_dead = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.asarray([_DEAD], dtype=np.int64)))
        self._dead_count = 0
        self._index: faiss.Index | None = None
        self._plan = plan_index(index_type, 0)
        self._index_generation = -1
        self._layouts_seen = -1
        self._synchronise()

    def __len__(self) -> int:
        with self._lock:
            index = self._current_index()
            return int(index.ntotal) - self._dead_count

    @property
    def generation(self) -> int:
        return int(self._db.execute("SELECT value FROM state WHERE key='generation'").fetchone()[0])

    @property
    def plan(self) -> IndexPlan:
        """The layout of the FAISS copy in use."""
        with self._lock:
            self._current_index()
            return self._plan

    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> list[int]:
        """Insert or replace images by path (an updated path keeps its id). Returns their ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(records) != len(vectors):
            raise ImageRankError(f"{len(records)} records but {len(vectors)} vectors")
        if not len(records):
            return []  # every generation logs at least one id: a gap in the log means an unlogged writer
        with self._lock:
            with self._transaction() as generation_before:
                ids = [
                    self._upsert_row(record, vector) for record, vector in zip(records, vectors, strict=True)
                ]
                self._log_changes(generation_before, ids)
            id_array = np.asarray(ids, dtype=np.int64)

            def replace_vectors(index: faiss.Index) -> None:
                self._remove(index, id_array)
                index.add_with_ids(vectors, id_array)

            self._after_commit(generation_before, replace_vectors)
        return ids

    def delete(self, ids: Sequence[int]) -> None:
        id_array = np.asarray(list(ids), dtype=np.int64)
        if not len(id_array):
            return
        with self._lock:
            with self._transaction() as generation_before:
                self._db.executemany("DELETE FROM images WHERE id = ?", [(int(i),) for i in id_array])
                self._log_changes(generation_before, id_array.tolist())
            self._after_commit(generation_before, lambda index: self._remove(index, id_array))

    def search(
        self, queries: np.ndarray, k: int, labels: Sequence[str | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query, best first, like FAISS; missing results have id -1.

        ``labels`` keeps images with one of those labels; None in it keeps the unlabelled ones.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            index = self._current_index()
            if labels is not None:
                return self._search_labelled(index, queries, k, labels)
            return self._search_selected(index, queries, k, self._not_dead if self._dead_count else None)

    def records(self, ids: Sequence[int]) -> list[ImageRecord]:
        """Records for the given ids, in the same order. Raises KeyError for an unknown id."""
        by_id = {
            record.id: record
            for record in self._select_records("WHERE id IN (SELECT value FROM json_each(?))", ids)
        }
        missing = [int(i) for i in ids if int(i) not in by_id]
        if missing:
            raise KeyError(f"no image with id {missing[0]} in the index")
        return [by_id[int(i)] for i in ids]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored (exact) vectors for the given ids, in order. Raises KeyError for an unknown id."""
        wanted = [int(i) for i in ids]
        with self._lock:
            rows = self._db.execute(
                "SELECT id, vector FROM images WHERE id IN (SELECT value FROM json_each(?))",
                (json.dumps(wanted),),
            ).fetchall()
        by_id = {row[0]: row[1] for row in rows}
        missing = [i for i in wanted if i not in by_id]
        if missing:
            raise KeyError(f"no image with id {missing[0]} in the index")
        blob = b"".join(by_id[i] for i in wanted)
        return np.frombuffer(blob, dtype=np.float32).reshape(-1, self.dim).copy()

    def all_records(self) -> list[ImageRecord]:
        return list(self._select_records("ORDER BY id", None))

    def labels(self) -> dict[str | None, int]:
        """Image count per label."""
        with self._lock:
            rows = self._db.execute("SELECT label, COUNT(*) FROM images GROUP BY label ORDER BY label")
            return dict(rows.fetchall())

    def flush(self) -> None:
        """Bring the layout in line with the collection's size, write the FAISS index of the current
        generation atomically (and drop older ones), and re-measure recall if it is out of date."""
        with self._lock:
            self._current_index()
            fresh = plan_index(self.index_type, len(self), self.dim)
            relaid_out = self._layout_outgrown(fresh)
            if relaid_out:
                with self._snapshot():
                    self._index, self._plan, self._index_generation = self._rebuilt_faiss()
            else:
                self._plan = replace(self._plan, reason=fresh.reason)  # e.g. "auto: 80 vectors", not 0
            self._write_faiss()
            self._trim_log(self._index_generation, relaid_out)
            measured = self._recall_record()
            count = len(self)
            if (
                self._plan.approximate
                and count
                and (
                    measured.get("type") != self._plan.type
                    or count > measured.get("vectors", 0) * _RECALL_STALE_GROWTH
                )
            ):
                self._measure_recall()

    def describe(self) -> dict:
        """Backend, layout, and (approximate layouts) recall@10 measured against exact search."""
        with self._lock:
            self._current_index()
            plan, written = self._plan, self._faiss_path(self._index_generation)
            return {
                "backend": "faiss",
                "index_type": plan.type,
                "requested": self.index_type,
                "layout": plan.describe(),
                "index_bytes": written.stat().st_size if written.is_file() else None,
                "recall": self._recall_record() if plan.approximate else None,
            }

    def close(self) -> None:
        self._db.close()

    def _faiss_path(self, generation: int) -> Path:
        return self.directory / f"vectors-{generation}.faiss"

    def _write_faiss(self) -> None:
        target = self._faiss_path(self._index_generation)
        plan_path = target.with_suffix(".json")
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        write_json_atomically(plan_path, self._plan.as_dict())
        faiss.write_index(self._index, str(partial))
        partial.replace(target)
        for stale in self.directory.glob("vectors-*"):
            if stale not in (target, plan_path):
                stale.unlink(missing_ok=True)

    def _synchronise(self) -> None:
        """Bring the FAISS copy up to the committed generation, cheapest way first, from one consistent
        snapshot: replay the change log onto the copy in memory; else (no copy yet, the log trimmed past
        it, or a newer flush changed the layout) load the newest file and replay onto that; else rebuild."""
        with self._snapshot():
            generation, layouts = self._versions()
            if (generation, layouts) == (self._index_generation, self._layouts_seen):
                return
            replayable = self._index is not None and self._replayable(self._index_generation, generation)
            newest = self._newest_file(generation)
            relayout = (
                newest is not None
                and newest[0] >= self._index_generation
                and newest[1].factory(self.dim) != self._plan.factory(self.dim)
            )
            loaded = self._read_file(*newest) if newest and (relayout or not replayable) else None
            if loaded is not None:
                self._index, self._plan, self._index_generation = loaded
                self._dead_count = self._count_dead(self._index, self._plan)
            elif not replayable:
                self._index, self._plan, self._index_generation = self._rebuilt_faiss()
            self._replay_changes(self._index_generation)
            self._index_generation, self._layouts_seen = generation, layouts

    def _versions(self) -> tuple[int, int]:
        """(generation, layouts): committed changes, and flushes that changed the layout."""
        rows = self._db.execute(
            "SELECT value FROM state WHERE key IN ('generation', 'layouts') ORDER BY key"
        ).fetchall()
        return rows[0][0], rows[1][0]

    def _replayable(self, since: int, generation: int) -> bool:
        """Whether the change log holds every generation after `since`: it is trimmed at each flush, and a
        writer that does not keep it (an older imagerank) leaves a gap."""
        log_start = self._db.execute("SELECT value FROM state WHERE key = 'log_start'").fetchone()[0]
        logged = self._db.execute(
            "SELECT COUNT(DISTINCT generation) FROM changes WHERE generation > ?", (since,)
        ).fetchone()[0]
        return since >= log_start and logged == generation - since

    def _newest_file(self, generation: int) -> tuple[int, IndexPlan, Path] | None:
        """(generation, plan, path) of the newest flushed FAISS copy that the change log can bring up to
        date and that holds the requested layout."""
        written = sorted(
            (int(path.stem.split("-")[1]), path)
            for path in self.directory.glob("vectors-*.faiss")
            if path.stem.split("-")[1].isdigit()
        )
        usable = [(gen, path) for gen, path in written if gen <= generation]
        if not usable or not self._replayable(usable[-1][0], generation):
            return None
        file_generation, path = usable[-1]
        try:
            plan = IndexPlan(**json.loads(path.with_suffix(".json").read_text(encoding="utf-8")))
        except (OSError, TypeError, ValueError):
            return None
        return (file_generation, plan, path) if plan.requested == self.index_type else None

    @staticmethod
    def _read_file(generation: int, plan: IndexPlan, path: Path) -> tuple[faiss.Index, IndexPlan, int] | None:
        try:
            return faiss.read_index(str(path)), plan, generation
        except RuntimeError:
            return None  # replaced by a newer flush while we read it: rebuild instead

    def _replay_changes(self, since: int) -> None:
        """Apply the logged changes after generation `since`: drop the touched ids, add back the current
        vectors of those still present."""
        rows = self._db.execute(
            "SELECT DISTINCT id FROM changes WHERE generation > ? ORDER BY id", (since,)
        ).fetchall()
        if not rows:
            return
        touched = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        self._remove(self._index, touched)
        present = self._db.execute(
            "SELECT id, vector FROM images WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
            (json.dumps(touched.tolist()),),
        ).fetchall()
        if present:
            present_ids, vectors = _chunk_arrays(present, self.dim)
            self._index.add_with_ids(vectors, present_ids)

    def _log_changes(self, generation_before: int, ids: Sequence[int]) -> None:
        self._db.executemany(
            "INSERT INTO changes VALUES (?, ?)", [(generation_before + 1, int(i)) for i in ids]
        )

    def _trim_log(self, flushed_generation: int, relaid_out: bool) -> None:
        """Forget the changes a flushed file already holds: a copy behind it loads that file instead. A
        new layout is announced (once its file is in place) so that other copies load it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM changes WHERE generation <= ?", (flushed_generation,))
            self._db.execute(
                "UPDATE state SET value = MAX(value, ?) WHERE key = 'log_start'", (flushed_generation,)
            )
            if relaid_out:
                self._db.execute("UPDATE state SET value = value + 1 WHERE key = 'layouts'")
                self._layouts_seen = self._versions()[1]
        finally:
            self._db.execute("COMMIT")

    def _rebuilt_faiss(self) -> tuple[faiss.Index, IndexPlan, int]:
        """All vectors from SQLite in a layout fit for their number, with their generation (call inside
        a snapshot)."""
        generation = self.generation
        ids = self._all_ids()
        plan = plan_index(self.index_type, len(ids), self.dim)
        training = self.vectors(_sample(ids, plan.training_size())) if plan.training_size() else None
        index = build_index(plan, self.dim, training)
        rows = self._db.execute("SELECT id, vector FROM images ORDER BY id")
        while chunk := rows.fetchmany(4096):
            chunk_ids, vectors = _chunk_arrays(chunk, self.dim)
            index.add_with_ids(vectors, chunk_ids)
        self._dead_count = 0
        return index, plan, generation

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(self._db)

    def _current_index(self) -> faiss.Index:
        """The FAISS copy, brought up to date first if another connection has committed (or re-laid out
        the index) since."""
        if self._versions() != (self._index_generation, self._layouts_seen):
            self._synchronise()
        return self._index

    def _after_commit(self, generation_before: int, change: Callable[[faiss.Index], None]) -> None:
        """Apply our committed change to the FAISS copy, or catch up from the log (which holds our
        change too) if another connection wrote first."""
        if generation_before != self._index_generation:
            self._synchronise()
            return
        change(self._index)
        self._index_generation = generation_before + 1

    def _remove(self, index: faiss.Index, ids: np.ndarray) -> None:
        """Remove vectors by id; in layouts that cannot lose vectors (`IndexPlan.supports_removal`),
        rename them dead instead."""
        if self._plan.supports_removal:
            index.remove_ids(ids)
            return
        id_map = _id_map_view(index)
        dead = np.isin(id_map, ids)
        id_map[dead] = _DEAD
        self._dead_count += int(dead.sum())

    @staticmethod
    def _count_dead(index: faiss.Index, plan: IndexPlan) -> int:
        return 0 if plan.supports_removal else int((_id_map_view(index) == _DEAD).sum())

    def _layout_outgrown(self, fresh: IndexPlan) -> bool:
        """Whether the collection's size calls for another layout (`fresh`), the layout's recipe changed
        (a file from an older imagerank), or too many dead vectors pile up."""
        count = len(self)
        current = self._plan
        return (
            fresh.type != current.type
            or fresh.refine != current.refine
            or fresh.lists >= 2 * max(current.lists, 1) > 2
            or self._dead_count > _MAX_DEAD_FRACTION * max(count, 1)
        )

    def _search_labelled(
        self, index: faiss.Index, queries: np.ndarray, k: int, labels: Sequence[str | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Search among the images with these labels; exactly, from the stored vectors, when they are few
        (a graph search restricted to a small subset misses much of it)."""
        ids = self._ids_with_labels(labels)
        if not len(ids):
            return empty_results(len(queries), k)
        if self._plan.approximate and len(ids) <= _EXACT_SUBSET_MAX:
            return self._reranked(queries, np.broadcast_to(ids, (len(queries), len(ids))), k)
        return self._search_selected(index, queries, k, faiss.IDSelectorBatch(ids))

    def _search_selected(
        self, index: faiss.Index, queries: np.ndarray, k: int, selector: faiss.IDSelector | None
    ) -> tuple[np.ndarray, np.ndarray]:
        params = search_parameters(self._plan, index, selector)
        scores, ids = index.search(queries, k * self._plan.rerank, params=params)
        if self._plan.rerank > 1:
            return self._reranked(queries, ids, k)
        return scores, ids

    def _ids_with_labels(self, labels: Sequence[str | None]) -> np.ndarray:
        """Ids of the images with one of ``labels``; None among them stands for the unlabelled images."""
        rows = self._db.execute(
            "SELECT id FROM images WHERE label IN (SELECT value FROM json_each(?)) OR (? AND label IS NULL) "
            "ORDER BY id",
            (json.dumps([label for label in labels if label is not None]), None in labels),
        ).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def _reranked(self, queries: np.ndarray, ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The top k of each query's shortlist `ids`, re-scored with the exact stored vectors."""
        found = np.unique(ids[ids >= 0])
        if not len(found):
            return empty_results(len(queries), k)
        exact = queries @ self.vectors(found).T
        positions = np.searchsorted(found, np.where(ids >= 0, ids, found[0]))
        scores = np.take_along_axis(exact, positions, axis=1)
        scores[ids < 0] = np.finfo(np.float32).min
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        top_scores = np.take_along_axis(scores, order, axis=1)
        top_ids = np.where(top_scores > np.finfo(np.float32).min, np.take_along_axis(ids, order, axis=1), -1)
        padding = k - order.shape[1]
        if padding > 0:
            empty_scores, empty_ids = empty_results(len(queries), padding)
            return np.hstack([top_scores, empty_scores]), np.hstack([top_ids, empty_ids])
        return top_scores.astype(np.float32), top_ids

    def _measure_recall(self) -> dict:
        """Recall@10 of the FAISS copy against exact search, on a sample of the stored vectors as queries."""
        ids = self._all_ids()
        queries = self.vectors(_sample(ids, RECALL_QUERIES))
        exact = faiss.ResultHeap(len(queries), RECALL_K, keep_max=True)
        rows = self._db.execute("SELECT id, vector FROM images ORDER BY id")
        while chunk := rows.fetchmany(4096):
            chunk_ids, vectors = _chunk_arrays(chunk, self.dim)
            scores, positions = faiss.knn(
                queries, vectors, min(RECALL_K, len(vectors)), faiss.METRIC_INNER_PRODUCT
            )
            exact.add_result(
                _padded(scores, RECALL_K, np.finfo(np.float32).min),
                _padded(chunk_ids[positions], RECALL_K, -1),
            )
        exact.finalize()
        _, approximate = self.search(queries, RECALL_K)
        record = {
            "recall_at_10": round(recall_at_k(approximate, exact.I), 4),
            "queries": len(queries),
            "vectors": len(ids),
            "type": self._plan.type,
        }
        self._db.execute(
            "INSERT OR REPLACE INTO settings VALUES ('recall', ?)", (json.dumps(record, sort_keys=True),)
        )
        return record

    def _recall_record(self) -> dict:
        row = self._db.execute("SELECT value FROM settings WHERE key = 'recall'").fetchone()
        return json.loads(row[0]) if row else {}

    def _all_ids(self) -> np.ndarray:
        rows = self._db.execute("SELECT id FROM images ORDER BY id").fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def _upsert_row(self, record: ImageRecord, vector: np.ndarray) -> int:
        values = (record.label, record.digest, record.size, record.mtime_ns, record.width, record.height)
        row = self._db.execute(
            "INSERT INTO images (path, label, digest, size, mtime_ns, width, height, vector)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(path) DO UPDATE SET label=excluded.label, digest=excluded.digest,"
            " size=excluded.size, mtime_ns=excluded.mtime_ns, width=excluded.width,"
            " height=excluded.height, vector=excluded.vector RETURNING id",
            (record.path, *values, vector.tobytes()),
        ).fetchone()
        return int(row[0])

    def _select_records(self, clause: str, ids: Sequence[int] | None) -> Iterator[ImageRecord]:
        arguments = () if ids is None else (json.dumps([int(i) for i in ids]),)
        with self._lock:
            rows = self._db.execute(f"SELECT {_RECORD_COLUMNS} FROM images {clause}", arguments).fetchall()
        for row in rows:
            yield ImageRecord(*row)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


def _chunk_arrays(chunk: list[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of a chunk of (id, vector blob) rows."""
    ids = np.fromiter((row[0] for row in chunk), dtype=np.int64, count=len(chunk))
    vectors = np.frombuffer(b"".join(row[1] for row in chunk), dtype=np.float32)
    return ids, vectors.reshape(-1, dim)


def _sample(ids: np.ndarray, size: int) -> np.ndarray:
    """A reproducible random sample of at most `size` ids, sorted."""
    if len(ids) <= size:
        return ids
    return np.sort(np.random.default_rng(0).choice(ids, size, replace=False))


def _padded(array: np.ndarray, width: int, fill: float) -> np.ndarray:
    if array.shape[1] == width:
        return np.ascontiguousarray(array)
    padding = np.full((array.shape[0], width - array.shape[1]), fill, dtype=array.dtype)
    return np.hstack([array, padding])


def _id_map_view(index: faiss.Index) -> np.ndarray:
    """A writable view of an IDMap2 index's position -> id table."""
    id_map = faiss.downcast_index(index).id_map
    return faiss.rev_swig_ptr(id_map.data(), id_map.size())


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT that also bumps the generation; rolls back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> int:
        """Start the write transaction; returns the generation it starts from."""
        self.db.execute("BEGIN IMMEDIATE")
        return int(self.db.execute("SELECT value FROM state WHERE key = 'generation'").fetchone()[0])

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is None:
            self.db.execute("UPDATE state SET value = value + 1 WHERE key = 'generation'")
            self.db.execute("COMMIT")
        else:
            self.db.execute("ROLLBACK")


class _Snapshot:
    """A read transaction (BEGIN ... COMMIT): every read inside sees one committed state."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN")

    def __exit__(self, *exc_info: object) -> None:
        self.db.execute("COMMIT")
