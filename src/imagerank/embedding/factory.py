"""`create_embedder` and `embed`: an embedder for a backbone name, in this process or on a Ray cluster.

The Ray embedder is imported only when engine "ray" is asked for, and it builds its workers' embedders with
`create_local_embedder`, so it never imports this module back.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from imagerank.embedding.embedder import ENGINES, Embedder, ImageInput, create_local_embedder
from imagerank.embedding.models import DEFAULT_MODEL
from imagerank.errors import ImageRankError


def create_embedder(
    name: str = DEFAULT_MODEL,
    weights: str | Path | None = None,
    engine: str = "auto",
    device: str = "cpu",
    decode_workers: int | None = None,
    address: str | None = None,
    latency: bool = False,
) -> Embedder:
    """An embedder for a registered backbone (`list_backbones()`) or any `timm:<name>`.

    Args:
        name: backbone name.
        weights: a state-dict file to use instead of the installed or downloadable weights.
        engine: "auto" (the fastest installed: OpenVINO, then ONNX Runtime, on CPUs; PyTorch on GPUs),
            "openvino", "onnx" (ONNX Runtime), "torch" (the reference; the one for GPUs), or "ray" (files
            embedded on a Ray cluster by "auto" engines; see `ray_embedder`). An engine that is
            not installed falls back to "auto" with a warning.
        device: torch device for the torch engine, e.g. "cuda".
        decode_workers: threads decoding images ahead of inference (default: one per core, 2 to 8).
        address: the Ray cluster for engine "ray" ("auto", "ray://host:10001"; default: `$RAY_ADDRESS`,
            else a local Ray instance).
        latency: tune the engine for one image at a time (search queries) instead of throughput.

    Raises:
        UnknownModelError, WeightsNotFoundError, ImageRankError (unknown engine, or a CPU engine with a GPU).
    """
    if engine not in ENGINES:
        raise ImageRankError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if engine == "ray":
        from imagerank.embedding.ray_embedder import RayEmbedder

        return RayEmbedder(name, weights, device=device, address=address, decode_workers=decode_workers)
    return create_local_embedder(name, weights, engine, device, decode_workers, latency)


def embed(
    images: Iterable[ImageInput],
    model: str = DEFAULT_MODEL,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    weights: str | Path | None = None,
) -> np.ndarray:
    """One-call embedding: (N, dim) float32 L2-normalised vectors for images or image paths."""
    embedder = create_embedder(model, weights=weights)
    return embedder.encode(images, batch_size=batch_size, show_progress_bar=show_progress_bar)
