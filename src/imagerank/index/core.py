"""`Index`: a folder of images embedded with one backbone, kept in a store, searchable by image or vector.

Indexing is incremental: a file whose size and modification time are unchanged is not read again, a file
whose content changed is embedded again (keeping its id), and files gone from the folder are dropped. Each
batch is committed on its own, so an interrupted run keeps what it finished and the next run resumes.
A file that could not be decoded is remembered (table ``skipped`` of ``metadata.sqlite``: its size,
modification time and reason) and reported again without being read until it changes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from imagerank import __version__
from imagerank.embedding.embedder import Embedder
from imagerank.embedding.factory import create_embedder
from imagerank.embedding.models import DEFAULT_MODEL
from imagerank.errors import ImageRankError, ModelMismatchError
from imagerank.index.building import Building
from imagerank.index.files import UPLOADS_PREFIX
from imagerank.index.fitted import FittedMethod
from imagerank.index.labelling import Labelling
from imagerank.index.searching import Searching, _FittedTextRanker
from imagerank.store.base import ImageRecord, VectorStore, read_manifest, write_json_atomically
from imagerank.store.factory import open_store

FORMAT = "imagerank-index"
FORMAT_VERSION = 1


class Index(Building, Searching, Labelling):
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
        # each fit with the version of its file, to notice a fit written since by another process
        self._fits: dict[
            str, tuple[FittedMethod, tuple[int, int, int] | None]
        ] = {}  # with its file's version
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

        `index_type` is the vector layout (`imagerank.store.ann.INDEX_TYPES`; ``auto`` picks by size); `store`
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
            "assigned_labels": len(self.assigned_labels()),
            "uploads": {"folder": str(self.uploads_folder), "count": self.upload_count()},
            "size_bytes": size,
            "store": self.store.describe(),
            "ranking": self.ranking_info(),
            "imagerank_version": self.manifest.get("imagerank_version"),
            "created": self.manifest.get("created"),
        }

    def close(self) -> None:
        self.store.close()


def _store_location(store: str | None) -> str | None:
    """How the manifest records a store: None for the embedded one, Milvus Lite paths made absolute."""
    if store in (None, "", "faiss"):
        return None
    if store.startswith("milvus-lite:"):
        return "milvus-lite:" + str(Path(store.removeprefix("milvus-lite:")).resolve())
    return store
