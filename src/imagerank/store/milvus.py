"""A `VectorStore` kept in Milvus: a Milvus standalone or distributed server, or embedded Milvus Lite.

Locations:
    milvus-lite:PATH.db                    Milvus Lite in this process; PATH.db is a directory it creates
    milvus://HOST[:PORT]/COLLECTION        a Milvus server over plain gRPC (port 19530 by default)
    milvus+https://HOST[:PORT]/COLLECTION  the same over TLS
A server that requires authentication reads its token ("user:password" or an API key) from the
IMAGERANK_MILVUS_TOKEN environment variable, so that no secret is written into an index's manifest.
Every call to a server gives up after IMAGERANK_MILVUS_TIMEOUT seconds (default 60; pymilvus alone retries
an unreachable server for minutes) with an ImageRankError that names the location.

Milvus versions: 2.3 has no INVERTED scalar index (its VARCHAR index is Trie) and no nullable fields, so a
collection created on a server older than 2.4 indexes `path` and `label` with Trie, and one created on a
server older than 2.5 stores a missing label as "" (read back as None). Both are read from the collection
itself when it is opened, so a collection keeps working after the server is upgraded. deploy/README.md
says which versions were run.

One row per image: id (INT64 primary key), vector (FLOAT_VECTOR), path, label (nullable), digest, size,
mtime_ns, width, height. Scores are inner products (metric IP), equal to FAISS IndexFlatIP's on the same
L2-normalised vectors.

Ids are assigned as SQLite's AUTOINCREMENT assigns them in `FaissStore` (1, 2, 3, ... in insertion order,
never reused): the next free id is kept in the collection's properties and a block is reserved there before
rows are written, so a crash can skip ids but never reuse one. Milvus has no transactions, so two
processes that add new images to one collection at the same moment could reserve the same block: run one
writer per collection at a time (readers are unlimited). Milvus Lite enforces one process per .db anyway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from imagerank.errors import ImageRankError
from imagerank.store.base import ImageRecord, empty_results
from imagerank.store.milvus_client import (
    _RECORD_FIELDS,
    _ROWS_PER_REQUEST,
    _SEARCH_PARAMS,
    METRIC,
    NEXT_ID_PROPERTY,
    NO_LABEL,
    MilvusLocation,
    _checked_index_type,
    _connect,
    _create_collection,
    _disconnect,
    _GuardedClient,
    _import_pymilvus,
    _label_is_nullable,
    _milvus_index_type,
    _server_version,
    parse_milvus_location,
)

if TYPE_CHECKING:
    from pymilvus import MilvusClient


def open_milvus_store(location: str, dim: int, index_type: str = "auto") -> MilvusStore:
    """Open the Milvus collection at `location`, creating it (with `index_type`) if it does not exist.

    Args:
        location: `milvus-lite:PATH.db` or `milvus://HOST:PORT/COLLECTION` (see the module docstring).
        dim: the dimension of the vectors; an existing collection must have it.
        index_type: one of ours (flat, hnsw, ivfpq, sq8, fp16, auto), used when the collection is created.
            On Milvus Lite, auto means FLAT (exact, as FaissStore), since Lite's AUTOINDEX is HNSW.

    Raises:
        ImageRankError: a malformed location, pymilvus missing, an unreachable server, a collection of
            another dimension or index type, or an index type Milvus Lite cannot build.
    """
    where = parse_milvus_location(location)
    milvus_index = _milvus_index_type(where, index_type)
    pymilvus = _import_pymilvus()
    raw_client = _connect(pymilvus, where)
    client: Any = _GuardedClient(raw_client, where, pymilvus.MilvusException)
    try:
        if not client.has_collection(where.collection):
            _create_collection(pymilvus, client, where, dim, milvus_index, _server_version(client, where))
        stored_index = _checked_index_type(client, where, dim, milvus_index if index_type != "auto" else None)
        client.load_collection(where.collection)
        nullable = _label_is_nullable(client, where)
    except BaseException:
        _disconnect(raw_client, where)
        raise
    return MilvusStore(client, where, dim, stored_index, nullable_label=nullable)


class MilvusStore:
    """Search and metadata in one Milvus collection, with `FaissStore`'s ids, ordering and padding.

    Everything sees every write before it (the collection is created with Strong consistency), except that
    on a server searches and the records/vectors of their results see this process's writes and others'
    within the server's time tick (200 ms), which makes a search 40 times faster (see READ_CONSISTENCY).
    Milvus Lite keeps unflushed rows in a table that every search and query scans row by row (seconds per
    call once it holds thousands of rows), so on Lite each upsert and delete is flushed at once. A server
    searches its growing segments efficiently and rate-limits flushes, so there only `flush()` flushes.
    """

    def __init__(
        self,
        client: MilvusClient,
        where: MilvusLocation,
        dim: int,
        index_type: str,
        nullable_label: bool = True,
    ) -> None:
        self._client = client
        self.where = where
        self.dim = dim
        self.index_type = index_type
        self.nullable_label = nullable_label
        self._open = True
        self._next_free_id: int | None = None  # above every id stored or reserved, once looked up

    def __len__(self) -> int:
        (row,) = self._client.query(self.where.collection, filter="", output_fields=["count(*)"])
        return int(row["count(*)"])

    def upsert(self, records: Sequence[ImageRecord], vectors: np.ndarray) -> list[int]:
        """Insert or replace images by path (an updated path keeps its id). Returns their ids."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(records) != len(vectors):
            raise ImageRankError(f"{len(records)} records but {len(vectors)} vectors")
        ids = self._ids_for_paths([record.path for record in records])
        # One row per path, the last one given winning, as repeated upserts in FaissStore's batch do.
        rows = {
            record.path: _row(identifier, record, vector, self.nullable_label)
            for identifier, record, vector in zip(ids, records, vectors, strict=True)
        }
        for batch in _chunks(list(rows.values()), _ROWS_PER_REQUEST):
            self._client.upsert(self.where.collection, batch)
        self._flush_if_lite()
        return ids

    def delete(self, ids: Sequence[int]) -> None:
        ids = [int(i) for i in ids]
        for batch in _chunks(ids, _ROWS_PER_REQUEST):
            self._client.delete(self.where.collection, ids=batch)
        if ids:
            self._flush_if_lite()

    def set_labels(self, labels: Mapping[int, str | None]) -> None:
        """Give images (by id) new labels: their rows are written again with the same vectors. Raises
        KeyError (nothing changed) for an unknown id. Not atomic past one request of rows (Milvus has no
        transactions); a half-applied change is completed by `Index.sync`."""
        ids = [int(i) for i in labels]
        records, vectors = self.records(ids), self.vectors(ids)
        rows = [
            _row(image_id, replace(record, label=labels[image_id]), vector, self.nullable_label)
            for image_id, record, vector in zip(ids, records, vectors, strict=True)
        ]
        for batch in _chunks(rows, _ROWS_PER_REQUEST):
            self._client.upsert(self.where.collection, batch)
        self._flush_if_lite()

    def search(
        self, queries: np.ndarray, k: int, labels: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, ids) per query, best first, like FAISS; missing results have id -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        scores, ids = empty_results(len(queries), k)
        if not len(queries) or (labels is not None and not labels):
            return scores, ids
        hits = self._client.search(
            self.where.collection,
            data=list(queries),
            limit=k,
            filter=_label_filter(labels) if labels is not None else "",
            output_fields=["id"],  # no other field: Milvus returns every field for an empty list
            search_params={"metric_type": METRIC, "params": self._search_params(k)},
            anns_field="vector",
        )
        for row, row_hits in enumerate(hits):
            for column, hit in enumerate(row_hits):
                scores[row, column], ids[row, column] = hit["distance"], hit["id"]
        return scores, ids

    def records(self, ids: Sequence[int]) -> list[ImageRecord]:
        """Records for the given ids, in the same order. Raises KeyError for an unknown id."""
        by_id = {row["id"]: _record(row) for row in self._rows_by_id(ids, _RECORD_FIELDS)}
        return [by_id[int(i)] for i in ids]

    def vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Stored vectors for the given ids, in order. Raises KeyError for an unknown id."""
        by_id = {row["id"]: row["vector"] for row in self._rows_by_id(ids, ["vector"])}
        return np.asarray([by_id[int(i)] for i in ids], dtype=np.float32).reshape(-1, self.dim)

    def all_records(self) -> list[ImageRecord]:
        return sorted(map(_record, self._all_rows(_RECORD_FIELDS)), key=lambda record: record.id or 0)

    def labels(self) -> dict[str | None, int]:
        """Image count per label (Milvus cannot group a query, so every label is read once)."""
        counts = Counter(row["label"] or None for row in self._all_rows(["label"]))
        return dict(sorted(counts.items(), key=lambda item: (item[0] is not None, item[0] or "")))

    def flush(self) -> None:
        """Make writes durable and fast to search: Milvus seals them into segments, then loads those."""
        self._client.flush(self.where.collection)
        self._client.load_collection(self.where.collection)

    def describe(self) -> dict:
        """Backend, URI, collection, Milvus index type and metric, e.g. for `imagerank info`."""
        index = self._client.describe_index(self.where.collection, "vector")
        return {
            "backend": "milvus-lite" if self.where.lite else "milvus",
            "location": self.where.location,
            "uri": self.where.uri,
            "collection": self.where.collection,
            "index_type": index["index_type"],
            "metric": index["metric_type"],
        }

    def close(self) -> None:
        """Disconnect; closing twice is harmless (and must not stop a Lite server another store uses)."""
        if self._open:
            self._open = False
            _disconnect(self._client.unguarded, self.where)

    def _flush_if_lite(self) -> None:
        if self.where.lite:
            self._client.flush(self.where.collection)

    def _ids_for_paths(self, paths: Sequence[str]) -> list[int]:
        """The id of each path: its stored id, else the next id at its position in the batch.

        Every path given uses up one id, stored or not, because SQLite's UPSERT does so with AUTOINCREMENT
        in `FaissStore`; the two stores therefore hand out the same ids for the same upserts.
        """
        if not paths:
            return []
        known = self._stored_ids(set(paths))
        first = self._reserve_ids(len(paths))
        for position, path in enumerate(paths):
            known.setdefault(path, first + position)
        return [known[path] for path in paths]

    def _stored_ids(self, paths: Iterable[str]) -> dict[str, int]:
        stored: dict[str, int] = {}
        for batch in _chunks(sorted(paths), _ROWS_PER_REQUEST):
            rows = self._client.query(
                self.where.collection,
                filter=f"path in [{', '.join(map(_quoted, batch))}]",
                output_fields=["path"],
            )
            stored.update((row["path"], int(row["id"])) for row in rows)
        return stored

    def _reserve_ids(self, count: int) -> int:
        """The first of `count` new consecutive ids, reserved in the collection's properties.

        A server killed right after an upsert can come back with rows newer than the property (Milvus 2.3
        was seen to lose the last property change but keep the rows), so the first reservation of a store
        also starts above the highest stored id: a reused id would overwrite another image's row.
        """
        if self._next_free_id is None:
            self._next_free_id = self._highest_stored_id() + 1
        properties = self._client.describe_collection(self.where.collection).get("properties", {})
        first = max(int(properties.get(NEXT_ID_PROPERTY, 1)), self._next_free_id)
        self._client.alter_collection_properties(
            self.where.collection, properties={NEXT_ID_PROPERTY: str(first + count)}
        )
        self._next_free_id = first + count
        return first

    def _highest_stored_id(self) -> int:
        """The highest id in the collection (0 when empty), by galloping then bisecting on `id >= n`
        (Milvus has no max()): about 2 log2(n) small queries."""

        def any_at_or_above(n: int) -> bool:
            return bool(
                self._client.query(self.where.collection, filter=f"id >= {n}", output_fields=["id"], limit=1)
            )

        if not any_at_or_above(1):
            return 0
        low, high = 1, 2  # an id >= low exists; find high with none at or above it
        while any_at_or_above(high):
            low, high = high, high * 2
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if any_at_or_above(middle) else (low, middle)
        return low

    def _rows_by_id(self, ids: Sequence[int], fields: list[str]) -> list[dict[str, Any]]:
        wanted = sorted({int(i) for i in ids})
        rows = [
            row
            for batch in _chunks(wanted, _ROWS_PER_REQUEST)
            for row in self._client.get(self.where.collection, ids=batch, output_fields=fields)
        ]
        missing = sorted(set(wanted) - {row["id"] for row in rows})
        if missing:
            raise KeyError(f"no image with id {missing[0]} in the index")
        return rows

    def _all_rows(self, fields: list[str]) -> list[dict[str, Any]]:
        """Every row; a server caps plain queries, so it is read page by page, Milvus Lite in one query
        (its responses carry no snapshot timestamp, which makes pymilvus's iterator warn on every page)."""
        if self.where.lite:
            return self._client.query(self.where.collection, filter="", output_fields=fields)
        iterator = self._client.query_iterator(
            self.where.collection, batch_size=_ROWS_PER_REQUEST, output_fields=fields
        )
        rows: list[dict[str, Any]] = []
        try:
            while batch := self._client.guarded(iterator.next):
                rows.extend(batch)
        finally:
            iterator.close()
        return rows

    def _search_params(self, k: int) -> dict[str, int]:
        """Search parameters for the collection's index; Milvus requires HNSW's ef to be at least k."""
        params = _SEARCH_PARAMS.get(self.index_type, {})
        return {name: max(value, k) if name == "ef" else value for name, value in params.items()}


def _row(identifier: int, record: ImageRecord, vector: np.ndarray, nullable_label: bool) -> dict[str, Any]:
    if record.label == NO_LABEL:
        raise ImageRankError(f"{record.path}: an empty label cannot be stored in Milvus")
    return {
        "id": identifier,
        "vector": vector,
        "path": record.path,
        "label": record.label if nullable_label or record.label is not None else NO_LABEL,
        "digest": record.digest,
        "size": record.size,
        "mtime_ns": record.mtime_ns,
        "width": record.width,
        "height": record.height,
    }


def _record(row: dict[str, Any]) -> ImageRecord:
    values = {name: row[name] for name in _RECORD_FIELDS}
    return ImageRecord(**{**values, "label": values["label"] or None}, id=int(row["id"]))


def _quoted(text: str) -> str:
    """A Milvus filter string literal, escaped as both Milvus and Milvus Lite read it."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _label_filter(labels: Sequence[str]) -> str:
    return f"label in [{', '.join(_quoted(label) for label in labels)}]"


def _chunks(items: list, size: int) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
