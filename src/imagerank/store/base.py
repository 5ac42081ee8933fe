"""The store interface every backend implements, the record of one image, and the index manifest."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from imagerank.errors import IndexNotFoundError

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

    def set_labels(self, labels: Mapping[int, str | None]) -> None: ...

    def search(
        self, queries: np.ndarray, k: int, labels: Sequence[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def records(self, ids: Sequence[int]) -> list[ImageRecord]: ...

    def all_records(self) -> list[ImageRecord]: ...

    def vectors(self, ids: Sequence[int]) -> np.ndarray: ...

    def labels(self) -> dict[str | None, int]: ...

    def flush(self) -> None: ...

    def describe(self) -> dict: ...

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


def empty_results(count: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Padding as FAISS pads missing inner-product results: the lowest float32 score and id -1."""
    lowest = np.finfo(np.float32).min
    return np.full((count, k), lowest, dtype=np.float32), np.full((count, k), -1, dtype=np.int64)
