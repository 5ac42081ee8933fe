"""The SQLite side of `FaissStore`: the schema, rows of image records and vectors, transactions and
snapshots. SQLite is the source of truth; the FAISS index is a cache of it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from imagerank.store.base import ImageRecord

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
_RECORD_COLUMNS = "path, label, digest, size, mtime_ns, width, height, id"


class SqliteRows:
    """`FaissStore` methods that read and write rows of the SQLite database."""

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

    def _stored_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Vectors for the given ids, in order, read from SQLite. Raises KeyError for an unknown id."""
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

    def set_labels(self, labels: Mapping[int, str | None]) -> None:
        """Give images (by id) new labels, in one transaction; their vectors stay as they are.

        Counted in `change_count` (one per image) so that fits see it; the generation and the change log,
        which say when the FAISS copy must catch up, are left alone: the copy holds no labels.
        Raises KeyError (nothing changed) for an unknown id.
        """
        rows = [(label, int(image_id)) for image_id, label in labels.items()]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for label, image_id in rows:
                    if (
                        self._db.execute(
                            "UPDATE images SET label = ? WHERE id = ?", (label, image_id)
                        ).rowcount
                        != 1
                    ):
                        raise KeyError(f"no image with id {image_id} in the index")
                self._db.execute(
                    "UPDATE state SET value = value + ? WHERE key = 'change_count'", (len(rows),)
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

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

    def _snapshot(self) -> _Snapshot:
        return _Snapshot(self._db)

    def _all_ids(self) -> np.ndarray:
        rows = self._db.execute("SELECT id FROM images ORDER BY id").fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))

    def _ids_with_labels(self, labels: Sequence[str | None]) -> np.ndarray:
        """Ids of the images with one of ``labels``; None among them stands for the unlabelled images."""
        rows = self._db.execute(
            "SELECT id FROM images WHERE label IN (SELECT value FROM json_each(?)) OR (? AND label IS NULL) "
            "ORDER BY id",
            (json.dumps([label for label in labels if label is not None]), None in labels),
        ).fetchall()
        return np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))


def _chunk_arrays(chunk: list[tuple[int, bytes]], dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) of a chunk of (id, vector blob) rows."""
    ids = np.fromiter((row[0] for row in chunk), dtype=np.int64, count=len(chunk))
    vectors = np.frombuffer(b"".join(row[1] for row in chunk), dtype=np.float32)
    return ids, vectors.reshape(-1, dim)


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
