"""Embedding pipeline: images -> L2-normalised float32 vectors.

Decoding runs in worker threads (Pillow releases the GIL while decoding and resizing) a few batches ahead of
inference, so the CPU cores are busy with the network while the next images are being read. Inference runs in
one of the engines of `embedding.engines`: PyTorch (the reference, and the GPU engine), or ONNX Runtime or
OpenVINO on an ONNX export of the same network, which are several times faster on CPUs; `engine="auto"` picks
the fastest one installed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from imagerank.embedding.decoding import open_image
from imagerank.embedding.engines import EXPORT_ENGINES, Engine, create_engine, engine_names, resolve_engine
from imagerank.embedding.engines.export import (  # noqa: F401 - public here too
    CACHE_ENV,
    cache_dir,
    exported_onnx_path,
    onnx_cache_path,
)
from imagerank.embedding.models import DEFAULT_MODEL, BackboneSpec, load_backbone, spec_with_local_weights
from imagerank.errors import BadImageError, ImageRankError

logger = logging.getLogger(__name__)

ENGINES = ("auto", *engine_names(), "ray")

ImageInput = Image.Image | str | Path


def default_decode_workers() -> int:
    """One decoding thread per core, at least 2 (so decoding overlaps inference) and at most 8."""
    return max(2, min(os.cpu_count() or 2, 8))


def l2_normalized(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32; zero rows stay zero."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.finfo(np.float32).tiny)


@dataclass
class EmbeddedBatch:
    """Vectors for the files of one batch that decoded, and the errors of those that did not."""

    paths: list[Path]
    vectors: np.ndarray
    errors: list[BadImageError] = field(default_factory=list)


@dataclass
class _PreparedBatch:
    paths: list[Path]
    arrays: list[np.ndarray]
    errors: list[BadImageError]


class Embedder:
    """Maps images to L2-normalised float32 vectors with one backbone.

    Example:
        >>> embedder = create_embedder("mobilenet_v2")
        >>> vectors = embedder.encode(["a.jpg", "b.jpg"], batch_size=32)
    """

    def __init__(
        self,
        spec: BackboneSpec,
        engine: Engine | Callable[[np.ndarray], np.ndarray],
        decode_workers: int | None = None,
    ) -> None:
        self.spec = spec
        self.engine = engine
        self.decode_workers = decode_workers or default_decode_workers()

    @property
    def engine_name(self) -> str:
        return getattr(self.engine, "name", type(self.engine).__name__)

    def prepare(self, image: ImageInput) -> np.ndarray:
        """Decode (when given a path) and preprocess one image into the network's uint8 input."""
        if not isinstance(image, Image.Image):
            image = open_image(image, draft_size=self.spec.resize_size)
        return self.spec.prepare(image)

    def embed_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Vectors for a prepared (N, H, W, 3) uint8 batch."""
        return l2_normalized(self.engine(np.ascontiguousarray(batch, dtype=np.uint8)))

    def encode(
        self, images: Iterable[ImageInput], batch_size: int = 32, show_progress_bar: bool = False
    ) -> np.ndarray:
        """Vectors for images or image paths, in order. Raises BadImageError on the first bad file."""
        items = list(images)
        if len(items) == 1 and batch_size >= 1 and not show_progress_bar:
            # A search query: no threads to start, nothing to overlap.
            return self.embed_arrays(self.prepare(items[0])[np.newaxis])
        chunks = []
        for batch in self._embedded_batches(items, batch_size, show_progress_bar):
            if batch.errors:
                raise batch.errors[0]
            chunks.append(batch.vectors)
        return np.concatenate(chunks) if chunks else np.zeros((0, self.spec.dim), np.float32)

    def iter_encode_files(
        self, paths: Sequence[str | Path], batch_size: int = 32, show_progress_bar: bool = False
    ) -> Iterator[EmbeddedBatch]:
        """Embed files batch by batch; bad files are returned as errors, never raised."""
        yield from self._embedded_batches(list(paths), batch_size, show_progress_bar)

    def _embedded_batches(
        self, items: list[ImageInput], batch_size: int, show_progress_bar: bool
    ) -> Iterator[EmbeddedBatch]:
        if batch_size < 1:
            raise ImageRankError(f"batch_size must be at least 1, got {batch_size}")
        chunks = [items[start : start + batch_size] for start in range(0, len(items), batch_size)]
        with (
            _progress(show_progress_bar, len(items), f"embedding ({self.spec.name})") as advance,
            ThreadPoolExecutor(max_workers=getattr(self.engine, "concurrent_calls", 1)) as inference,
        ):
            # Inference of batch i+1 runs while the caller consumes batch i (e.g. writes it to an index);
            # an engine sharing its infer requests between calls starts it before batch i is done.
            window: deque[tuple[_PreparedBatch, Future[np.ndarray]]] = deque()
            for prepared in self._prepared_ahead(chunks):
                window.append((prepared, inference.submit(self._vectors_for, prepared)))
                if len(window) > 1:
                    yield self._embedded(*window.popleft(), advance)
            while window:
                yield self._embedded(*window.popleft(), advance)

    def _vectors_for(self, prepared: _PreparedBatch) -> np.ndarray:
        if not prepared.arrays:
            return np.zeros((0, self.spec.dim), np.float32)
        return self.embed_arrays(np.stack(prepared.arrays))

    @staticmethod
    def _embedded(
        prepared: _PreparedBatch, vectors: Future[np.ndarray], advance: Callable[[int], None]
    ) -> EmbeddedBatch:
        batch = EmbeddedBatch(prepared.paths, vectors.result(), prepared.errors)
        advance(len(prepared.paths) + len(prepared.errors))
        return batch

    def _prepared_ahead(self, chunks: list[list[ImageInput]]) -> Iterator[_PreparedBatch]:
        """Prepared batches in order, decoded by worker threads a few batches ahead of the consumer."""
        with ThreadPoolExecutor(max_workers=self.decode_workers, initializer=_yield_to_inference) as pool:
            window: deque[Future[_PreparedBatch]] = deque()
            pending = iter(chunks)
            for chunk in pending:
                window.append(pool.submit(self._prepared_batch, chunk))
                if len(window) > self.decode_workers:
                    yield window.popleft().result()
            while window:
                yield window.popleft().result()

    def _prepared_batch(self, chunk: list[ImageInput]) -> _PreparedBatch:
        prepared = _PreparedBatch([], [], [])
        for item in chunk:
            try:
                array = self.prepare(item)
            except BadImageError as error:
                prepared.errors.append(error)
                continue
            prepared.arrays.append(array)
            prepared.paths.append(Path(item) if not isinstance(item, Image.Image) else Path("<image>"))
        return prepared


def _yield_to_inference() -> None:
    """Lower this decoding thread's scheduling priority (Linux: per thread).

    Inference threads meet at barriers: a core taken by a decoding thread in the middle of a parallel
    section stalls the whole network. Decoding at a lower priority fills the gaps between sections instead.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
    except (AttributeError, OSError):
        return


class _progress:
    """A Rich progress bar as a context manager yielding an `advance(n)` callable (a no-op when off)."""

    def __init__(self, enabled: bool, total: int, description: str) -> None:
        self.enabled = enabled and total > 0
        self.total = total
        self.description = description
        self.bar: Progress | None = None

    def __enter__(self) -> Callable[[int], None]:
        if not self.enabled:
            return lambda _count: None
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self.bar.start()
        task = self.bar.add_task(self.description, total=self.total)
        return lambda count: self.bar.advance(task, count)  # type: ignore[union-attr]

    def __exit__(self, *exc_info: object) -> None:
        if self.bar is not None:
            self.bar.stop()


def create_local_embedder(
    name: str = DEFAULT_MODEL,
    weights: str | Path | None = None,
    engine: str = "auto",
    device: str = "cpu",
    decode_workers: int | None = None,
    latency: bool = False,
) -> Embedder:
    """An embedder running in this process: what `imagerank.embedding.factory.create_embedder` gives for every
    engine but "ray" (and what each Ray worker runs)."""
    resolved = resolve_engine(engine, device)
    if resolved in EXPORT_ENGINES:
        # An export already cached for these weights starts without PyTorch: only the engine is loaded.
        local = spec_with_local_weights(name, weights)
        if local is not None and onnx_cache_path(local).is_file():
            runner = create_engine(resolved, None, local, device=device, latency=latency)
            return Embedder(local, runner, decode_workers=decode_workers)
    network, spec = load_backbone(name, weights)
    runner = create_engine(resolved, network, spec, device=device, latency=latency)
    return Embedder(spec, runner, decode_workers=decode_workers)
