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

import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np

from imagerank.errors import ImageRankError
from imagerank.store.ann import IndexPlan, plan_index
from imagerank.store.base import DATABASE, SCHEMA_VERSION, ImageRecord
from imagerank.store.faiss_files import _DEAD, FaissFiles
from imagerank.store.recall import _RECALL_STALE_GROWTH, RecallAndFilters
from imagerank.store.rows import _SCHEMA, SqliteRows


class FaissStore(SqliteRows, FaissFiles, RecallAndFilters):
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
        self._db.execute("INSERT OR IGNORE INTO state VALUES ('change_count', 0)")
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
    def change_count(self) -> int:
        """How many image writes and removals this store has committed (never trimmed, unlike the log):
        what changed since an earlier moment is at most the difference."""
        return int(self._db.execute("SELECT value FROM state WHERE key='change_count'").fetchone()[0])

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

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored (exact) vectors for the given ids, in order. Raises KeyError for an unknown id.

        Layouts that keep the float32 vectors themselves (flat, HNSW) give them from memory, bit for bit
        the ones in SQLite (a thousand in 0.2 ms instead of 11 ms); the others read them from SQLite.
        """
        wanted = np.asarray([int(i) for i in ids], dtype=np.int64)
        with self._lock:
            index = self._current_index()
            if self._plan.keeps_vectors and len(wanted):
                try:
                    return index.reconstruct_batch(wanted)
                except RuntimeError:
                    pass  # an unknown id: SQLite names it
            return self._stored_vectors(wanted.tolist())

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
