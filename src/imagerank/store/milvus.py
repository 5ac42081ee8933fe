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

import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import numpy as np

from imagerank.errors import ImageRankError
from imagerank.store.base import ImageRecord, empty_results

if TYPE_CHECKING:
    from pymilvus import MilvusClient

LITE_PREFIX = "milvus-lite:"
LITE_COLLECTION = "images"
DEFAULT_PORT = 19530
TOKEN_VARIABLE = "IMAGERANK_MILVUS_TOKEN"
TIMEOUT_VARIABLE = "IMAGERANK_MILVUS_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0
NO_LABEL = ""  # a missing label, in a collection whose label field cannot be null (Milvus < 2.5)
NEXT_ID_PROPERTY = "imagerank.next_id"
METRIC = "IP"
_SCHEMES = {"milvus": "http", "milvus+https": "https"}
_COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_RECORD_FIELDS = ["path", "label", "digest", "size", "mtime_ns", "width", "height"]
_LOCAL_METHODS = {"prepare_index_params"}  # client methods that make no request (and take no timeout)
# Searches, and the lookups of their results, wait for no more than this process's own writes on a server.
# Strong (the collection's default) waits for the server's next time tick, every 200 ms in Milvus 2.3: a
# search took 200 ms instead of 5. Writes by another process (an indexer, while a server reads) show up
# within that tick. Everything a writer decides from (which paths are stored, the highest id, the listing
# of all rows) stays Strong: after a server restart a Session read may not see recovered rows yet, and a
# writer that missed them would store those images a second time.
READ_CONSISTENCY = "Session"
_READS = {"search", "get"}
_ROWS_PER_REQUEST = 1000  # about 5 MB of 1280-d vectors, far below gRPC's message limits

# Our index types as Milvus's. Milvus Lite 3.2 builds FLAT (NumPy brute force), HNSW, HNSW_SQ, IVF_FLAT,
# IVF_SQ8 and AUTOINDEX (HNSW there), but not IVF_PQ. Milvus has no exhaustive half-precision index over
# FLOAT_VECTOR fields, so fp16 gets the 8-bit IVF_SQ8 as sq8 does.
MILVUS_INDEX_TYPES = {
    "flat": "FLAT",
    "hnsw": "HNSW",
    "ivfpq": "IVF_PQ",
    "sq8": "IVF_SQ8",
    "fp16": "IVF_SQ8",
    "auto": "AUTOINDEX",
}
_NOT_ON_LITE = {"IVF_PQ"}
_BUILD_PARAMS = {
    "HNSW": {"M": 32, "efConstruction": 200},
    "IVF_PQ": {"nlist": 1024, "nbits": 8},
    "IVF_SQ8": {"nlist": 1024},
}
_SEARCH_PARAMS = {"HNSW": {"ef": 128}, "IVF_PQ": {"nprobe": 32}, "IVF_SQ8": {"nprobe": 32}}
# Stores open per Milvus Lite .db in this process: its in-process server must outlive all of them.
_lite_users: Counter[str] = Counter()
_lite_lock = threading.Lock()


@dataclass(frozen=True)
class MilvusLocation:
    """Where a Milvus store lives: the pymilvus URI, the collection, and whether it is Milvus Lite."""

    location: str
    uri: str
    collection: str
    lite: bool


def parse_milvus_location(location: str) -> MilvusLocation:
    """The URI and collection named by a `milvus-lite:PATH.db` or `milvus://HOST:PORT/COLLECTION` location."""
    if location.startswith(LITE_PREFIX):
        path = location.removeprefix(LITE_PREFIX)
        if not path.endswith(".db") or path == ".db":
            raise ImageRankError(f"{location}: a Milvus Lite location is milvus-lite:PATH.db")
        return MilvusLocation(location, str(Path(path).expanduser().absolute()), LITE_COLLECTION, True)
    parts = urlsplit(location)
    collection = parts.path.strip("/")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        raise ImageRankError(f"{location}: the port is not a number") from None
    if parts.scheme not in _SCHEMES or not parts.hostname or not collection:
        raise ImageRankError(
            f"{location}: a Milvus server location is milvus://HOST:PORT/COLLECTION "
            f"(or milvus+https://... for TLS)"
        )
    if not _COLLECTION_NAME.fullmatch(collection):
        raise ImageRankError(
            f"{location}: {collection!r} is not a Milvus collection name "
            f"(letters, digits and underscores, not starting with a digit)"
        )
    uri = f"{_SCHEMES[parts.scheme]}://{parts.hostname}:{port}"
    return MilvusLocation(location, uri, collection, False)


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


def _import_pymilvus() -> ModuleType:
    try:
        import pymilvus
    except ImportError:
        raise ImageRankError(
            "a Milvus store needs pymilvus and Milvus Lite: pip install 'imagerank[milvus]'"
        ) from None
    _quiet_pymilvus_logs()
    return pymilvus


def _quiet_pymilvus_logs() -> None:
    """Keep pymilvus from printing to stderr on its own: it logs each retry against a dead server with a
    traceback, and on every listing from Milvus 2.3 (no snapshot time) a warning. What matters reaches the
    caller as an ImageRankError; pymilvus's records go to the application's logging, critical ones only."""
    for name in ("pymilvus", "pymilvus.milvus_client"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.CRITICAL)


def _milvus_index_type(where: MilvusLocation, index_type: str) -> str:
    if index_type not in MILVUS_INDEX_TYPES:
        raise ImageRankError(
            f"unknown index type {index_type!r}; choose one of {', '.join(MILVUS_INDEX_TYPES)}"
        )
    if where.lite and index_type == "auto":
        return "FLAT"
    milvus_index = MILVUS_INDEX_TYPES[index_type]
    if where.lite and milvus_index in _NOT_ON_LITE:
        raise ImageRankError(
            f"{where.location}: Milvus Lite cannot build {milvus_index} (for --index-type {index_type}); "
            f"use flat, hnsw, sq8 or fp16, or a Milvus server"
        )
    return milvus_index


def _connect(pymilvus: ModuleType, where: MilvusLocation) -> MilvusClient:
    if where.lite:
        Path(where.uri).parent.mkdir(parents=True, exist_ok=True)
    try:
        client = pymilvus.MilvusClient(uri=where.uri, token=os.environ.get(TOKEN_VARIABLE, ""))
    except pymilvus.MilvusException as error:
        hint = " (Milvus Lite lets one process at a time open a .db)" if where.lite else ""
        raise ImageRankError(f"{where.location}: cannot connect to Milvus: {error.message}{hint}") from None
    if where.lite:
        with _lite_lock:
            _lite_users[where.uri] += 1
    return client


def _disconnect(client: MilvusClient, where: MilvusLocation) -> None:
    """Close the client; the last store of a Milvus Lite .db also stops the server that holds its lock."""
    client.close()
    if not where.lite:
        return
    with _lite_lock:
        _lite_users[where.uri] -= 1
        last = _lite_users[where.uri] <= 0
        if last:
            del _lite_users[where.uri]
    if last:
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(where.uri)


def _create_collection(
    pymilvus: ModuleType,
    client: MilvusClient,
    where: MilvusLocation,
    dim: int,
    milvus_index: str,
    version: tuple[int, int],
) -> None:
    text, integer = pymilvus.DataType.VARCHAR, pymilvus.DataType.INT64
    schema = pymilvus.MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", integer, is_primary=True)
    schema.add_field("vector", pymilvus.DataType.FLOAT_VECTOR, dim=dim)
    schema.add_field("path", text, max_length=65535)
    # Nullable fields came with Milvus 2.5; before, a missing label is stored as NO_LABEL.
    schema.add_field("label", text, max_length=65535, **({"nullable": True} if version >= (2, 5) else {}))
    schema.add_field("digest", text, max_length=128)
    for name in ("size", "mtime_ns", "width", "height"):
        schema.add_field(name, integer)
    index_params = client.prepare_index_params()
    build_params = _BUILD_PARAMS.get(milvus_index, {})
    if milvus_index == "IVF_PQ":
        build_params = {**build_params, "m": _pq_subquantizers(dim)}
    index_params.add_index("vector", index_type=milvus_index, metric_type=METRIC, params=build_params)
    for name in ("path", "label"):  # Milvus 2.3 indexes VARCHAR with Trie only; INVERTED came with 2.4
        index_params.add_index(name, index_type="INVERTED" if version >= (2, 4) else "Trie")
    client.create_collection(where.collection, schema=schema, consistency_level="Strong")
    # Not waiting for the (empty) indexes to build: Milvus Lite cannot report their progress.
    client.create_index(where.collection, index_params, sync=False)


def _checked_index_type(
    client: MilvusClient, where: MilvusLocation, dim: int, milvus_index: str | None
) -> str:
    """The collection's Milvus index type, after refusing another dimension or another index than asked."""
    fields = {field["name"]: field for field in client.describe_collection(where.collection)["fields"]}
    if {"id", "vector", *_RECORD_FIELDS} - set(fields):
        raise ImageRankError(
            f"{where.location}: the collection {where.collection!r} is not an imagerank collection "
            f"(it lacks some of the fields id, vector, {', '.join(_RECORD_FIELDS)}); use another collection"
        )
    stored_dim = int(fields["vector"]["params"]["dim"])
    if stored_dim != dim:
        raise ImageRankError(
            f"{where.location}: the collection {where.collection!r} holds vectors of dimension {stored_dim}, "
            f"not {dim}; use another collection for another model"
        )
    stored_index = client.describe_index(where.collection, "vector")["index_type"]
    if milvus_index is not None and stored_index != milvus_index:
        raise ImageRankError(
            f"{where.location}: the collection {where.collection!r} has a {stored_index} index, "
            f"not {milvus_index}; use another collection for another index type"
        )
    return stored_index


def _server_version(client: Any, where: MilvusLocation) -> tuple[int, int]:
    """(major, minor) of the server, e.g. (2, 3) for "v2.3.5-lite"; Milvus Lite 3 counts as current."""
    if where.lite:
        return (9, 9)
    version = str(client.get_server_version())
    match = re.match(r"v?(\d+)\.(\d+)", version)
    if match is None:
        raise ImageRankError(f"{where.location}: cannot read the Milvus server version {version!r}")
    return int(match[1]), int(match[2])


def _label_is_nullable(client: Any, where: MilvusLocation) -> bool:
    fields = client.describe_collection(where.collection)["fields"]
    return bool(next(field for field in fields if field["name"] == "label").get("nullable", False))


class _GuardedClient:
    """A MilvusClient whose calls time out (IMAGERANK_MILVUS_TIMEOUT) and fail with an ImageRankError that
    says where and what to do, instead of pymilvus retrying a dead server for minutes and a traceback."""

    def __init__(self, client: MilvusClient, where: MilvusLocation, error_type: type[Exception]) -> None:
        self.unguarded = client
        self._where = where
        self._error_type = error_type
        self._timeout = None if where.lite else _timeout_seconds()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.unguarded, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            if self._timeout is not None and name not in _LOCAL_METHODS:
                kwargs.setdefault("timeout", self._timeout)
            if not self._where.lite and name in _READS:
                kwargs.setdefault("consistency_level", READ_CONSISTENCY)
            return self.guarded(method, *args, **kwargs)

        return call

    def guarded(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except self._error_type as error:
            message = getattr(error, "message", None) or str(error)
            raise ImageRankError(
                f"{self._where.location}: Milvus did not answer or refused the request ({message}). "
                f"Is the server running? Everything stored before this is kept: run the command again "
                f"once Milvus is back, and it resumes where it stopped"
            ) from None


def _timeout_seconds() -> float:
    text = os.environ.get(TIMEOUT_VARIABLE, "")
    try:
        return float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise ImageRankError(f"{TIMEOUT_VARIABLE}={text!r} is not a number of seconds") from None


def _pq_subquantizers(dim: int) -> int:
    """The most product-quantizer subvectors, up to 64, that divide the dimension (IVF_PQ requires it)."""
    return next(m for m in (64, 48, 32, 24, 16, 12, 8, 4, 2, 1) if dim % m == 0)


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
