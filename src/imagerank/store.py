"""The on-disk index store: SQLite metadata (the source of truth, vectors included) plus a FAISS index.

Layout of an index directory:
    manifest.json          model, weights id, dimension, preprocessing, package version (written atomically)
    metadata.sqlite        one row per image: path, label, digest, size, mtime, width, height, vector
    vectors-<gen>.faiss    FAISS index for generation <gen>, a cache rebuilt from SQLite when missing

Every change is one SQLite transaction that also bumps the generation; the FAISS file of the new generation
is written to a temporary name and renamed into place afterwards. A process killed at any moment therefore
leaves a readable index: at worst the FAISS file is behind the database and is rebuilt on the next open.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from imagerank.errors import ImageRankError, IndexNotFoundError

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
DATABASE = "metadata.sqlite"


@dataclass(frozen=True)
class ImageRecord:
    """Metadata of one indexed image. `path` is relative to the indexed root, with forward slashes."""

    path: str
    label: str | None
    digest: str
    size: int
    mtime_ns: int
    width: int
    height: int
    id: int | None = None


class VectorStore(Protocol):
    """What the rest of imagerank needs from a store; a distributed backend implements the same."""

    dim: int

    def __len__(self) -> int: ...

    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> list[int]: ...

    def delete(self, ids: Sequence[int]) -> None: ...

    def search(
        self, queries: np.ndarray, k: int, labels: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def records(self, ids: Sequence[int]) -> list[ImageRecord]: ...

    def vectors(self, ids: Sequence[int]) -> np.ndarray: ...

    def close(self) -> None: ...


def write_json_atomically(path: Path, data: dict) -> None:
    """Write JSON to a temporary file, fsync it, and rename it over `path`."""
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with partial.open("w", encoding="utf-8") as stream:
        json.dump(data, stream, indent=2, sort_keys=True)
        stream.flush()
        os.fsync(stream.fileno())
    partial.replace(path)


def read_manifest(directory: Path) -> dict:
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise IndexNotFoundError(
            f"no imagerank index at {directory} (missing {MANIFEST}); run `imagerank index`"
        )
    return json.loads(path.read_text(encoding="utf-8"))


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
"""

_RECORD_COLUMNS = "path, label, digest, size, mtime_ns, width, height, id"


class FaissStore:
    """Exact inner-product search over L2-normalised vectors (cosine), FAISS in memory, SQLite on disk.

    Safe to share between threads: searches and writes are serialised by a lock, and SQLite runs in
    write-ahead-log mode so other processes can read while one writes. The in-memory FAISS copy knows the
    generation it reflects; when another connection (another process) has committed since, the copy is
    reloaded from SQLite before it is searched, changed or written to disk.
    """

    def __init__(self, directory: str | Path, dim: int) -> None:
        self.directory = Path(directory)
        self.dim = dim
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.directory / DATABASE, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._db.execute("INSERT OR IGNORE INTO state VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        self._db.execute("INSERT OR IGNORE INTO state VALUES ('generation', 0)")
        self._index, self._index_generation = self._load_or_rebuild_faiss()

    def __len__(self) -> int:
        with self._lock:
            return int(self._current_index().ntotal)

    @property
    def generation(self) -> int:
        return int(self._db.execute("SELECT value FROM state WHERE key='generation'").fetchone()[0])

    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> list[int]:
        """Insert or replace images by path (an updated path keeps its id). Returns their ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(records) != len(vectors):
            raise ImageRankError(f"{len(records)} records but {len(vectors)} vectors")
        with self._lock:
            with self._transaction() as generation_before:
                ids = [
                    self._upsert_row(record, vector) for record, vector in zip(records, vectors, strict=True)
                ]
            id_array = np.asarray(ids, dtype=np.int64)

            def replace_vectors(index: faiss.Index) -> None:
                index.remove_ids(id_array)
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
            self._after_commit(generation_before, lambda index: index.remove_ids(id_array))

    def search(
        self, queries: np.ndarray, k: int, labels: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query, best first, like FAISS; missing results have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        with self._lock:
            params = self._label_filter(labels) if labels is not None else None
            if params is False:
                return _empty_results(len(queries), k)
            return self._current_index().search(queries, k, params=params)

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
        """Stored vectors for the given ids, in order. Raises KeyError for an unknown id."""
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            try:
                index = self._current_index()
                return np.stack([index.reconstruct(int(i)) for i in ids]).reshape(-1, self.dim)
            except RuntimeError:
                raise KeyError(f"an id in {list(ids)[:5]} is not in the index") from None

    def all_records(self) -> list[ImageRecord]:
        return list(self._select_records("ORDER BY id", None))

    def labels(self) -> dict[str | None, int]:
        """Image count per label."""
        with self._lock:
            rows = self._db.execute("SELECT label, COUNT(*) FROM images GROUP BY label ORDER BY label")
            return dict(rows.fetchall())

    def flush(self) -> None:
        """Write the FAISS index of the current generation, atomically, and drop older ones."""
        with self._lock:
            index = self._current_index()
            target = self._faiss_path(self._index_generation)
            partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
            faiss.write_index(index, str(partial))
            partial.replace(target)
            for stale in self.directory.glob("vectors-*.faiss"):
                if stale != target:
                    stale.unlink(missing_ok=True)

    def close(self) -> None:
        self._db.close()

    def _faiss_path(self, generation: int) -> Path:
        return self.directory / f"vectors-{generation}.faiss"

    def _load_or_rebuild_faiss(self) -> tuple[faiss.Index, int]:
        """The FAISS copy and the generation it reflects: from its file if there is one, else SQLite."""
        generation = self.generation
        path = self._faiss_path(generation)
        if path.is_file():
            return faiss.read_index(str(path)), generation
        return self._rebuilt_faiss()

    def _rebuilt_faiss(self) -> tuple[faiss.Index, int]:
        """All vectors from SQLite and their generation, read in one transaction (one consistent snapshot)."""
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(self.dim))
        self._db.execute("BEGIN")
        try:
            generation = self.generation
            rows = self._db.execute("SELECT id, vector FROM images ORDER BY id")
            while chunk := rows.fetchmany(4096):
                ids = np.fromiter((row[0] for row in chunk), dtype=np.int64, count=len(chunk))
                vectors = np.frombuffer(b"".join(row[1] for row in chunk), dtype=np.float32)
                index.add_with_ids(vectors.reshape(-1, self.dim), ids)
        finally:
            self._db.execute("COMMIT")
        return index, generation

    def _current_index(self) -> faiss.Index:
        """The FAISS copy, reloaded from SQLite first if another connection has committed since."""
        if self.generation != self._index_generation:
            self._index, self._index_generation = self._rebuilt_faiss()
        return self._index

    def _after_commit(self, generation_before: int, change: Callable[[faiss.Index], None]) -> None:
        """Apply our committed change to the FAISS copy, or reload it if another connection wrote first."""
        if generation_before != self._index_generation:
            self._index, self._index_generation = self._rebuilt_faiss()
            return
        change(self._index)
        self._index_generation = generation_before + 1

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

    def _label_filter(self, labels: Sequence[str]) -> faiss.SearchParameters | bool:
        ids = [
            row[0]
            for row in self._db.execute(
                "SELECT id FROM images WHERE label IN (SELECT value FROM json_each(?))",
                (json.dumps(list(labels)),),
            )
        ]
        if not ids:
            return False
        selector = faiss.IDSelectorBatch(np.asarray(ids, dtype=np.int64))
        return faiss.SearchParameters(sel=selector)

    def _select_records(self, clause: str, ids: Sequence[int] | None) -> Iterator[ImageRecord]:
        arguments = () if ids is None else (json.dumps([int(i) for i in ids]),)
        with self._lock:
            rows = self._db.execute(f"SELECT {_RECORD_COLUMNS} FROM images {clause}", arguments).fetchall()
        for row in rows:
            yield ImageRecord(*row)

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


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


def _empty_results(count: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Padding as FAISS pads missing inner-product results: the lowest float32 score and id -1."""
    lowest = np.finfo(np.float32).min
    return np.full((count, k), lowest, dtype=np.float32), np.full((count, k), -1, dtype=np.int64)
