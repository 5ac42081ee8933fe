"""`open_store`: the store a location names. Backends are imported only when a location names them."""

from __future__ import annotations

from pathlib import Path

from imagerank.errors import ImageRankError
from imagerank.store.base import VectorStore
from imagerank.store.faiss_store import FaissStore


def open_store(location: str | None, directory: Path, dim: int, index_type: str = "auto") -> VectorStore:
    """The store at `location`: the embedded FAISS + SQLite store in `directory` (None or ``faiss``),
    ``milvus-lite:PATH.db`` for embedded Milvus Lite, or ``milvus://HOST:PORT/COLLECTION`` for a server."""
    if location in (None, "", "faiss"):
        return FaissStore(directory, dim, index_type)
    if location.startswith(("milvus-lite:", "milvus://", "milvus+https://")):
        from imagerank.store.milvus import open_milvus_store

        return open_milvus_store(location, dim, index_type)
    raise ImageRankError(
        f"unknown store {location!r}: use faiss, milvus-lite:PATH.db or milvus://HOST:PORT/COLLECTION"
    )
