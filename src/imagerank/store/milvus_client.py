"""Talking to Milvus for `MilvusStore`: locations (``milvus-lite:PATH.db``, ``milvus://HOST:PORT/COLLECTION``),
the pymilvus import, connections with timeouts and clean errors, and the collection with its index layout.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from imagerank.errors import ImageRankError

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
