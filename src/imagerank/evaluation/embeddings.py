"""The labelled images an evaluation needs, embedded once: a content-keyed cache of embeddings per backbone,
labelled folders listed and embedded (bad files skipped and reported), and several backbones joined.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np

from imagerank.embedding.decoding import file_digest
from imagerank.embedding.embedder import cache_dir
from imagerank.embedding.factory import create_embedder
from imagerank.embedding.models import DEFAULT_MODEL
from imagerank.errors import BadImageError, ImageRankError
from imagerank.evaluation.protocols import drop_small_labels, list_labelled_images, scan_labelled_images
from imagerank.ranking import normalized


class Embedder(TypingProtocol):
    """What :func:`cached_embeddings` needs from an embedder (see ``imagerank.embedding.embedder``)."""

    spec: Any

    def iter_encode_files(
        self, paths: Sequence[str | Path], batch_size: int = ..., show_progress_bar: bool = ...
    ) -> Iterator[Any]: ...


def cached_embeddings(
    paths: Sequence[str | Path],
    embedder: Embedder,
    cache_dir: str | Path,
    show_progress_bar: bool = False,
) -> np.ndarray:
    """Return one vector per path, embedding only files whose content the cache has not seen.

    The cache is one ``.npz`` per backbone and weights (``<model>-<weights id>.npz`` under
    ``cache_dir``) mapping file-content digests to vectors, so renamed or moved files are not
    re-embedded and edited files are. Raises ``BadImageError`` on a file that cannot be embedded (the
    others are cached first); :func:`embed_labelled_folder` skips such files instead.
    """
    vectors, skipped = _cached_embeddings_skipping_bad(paths, embedder, cache_dir, show_progress_bar)
    if skipped:
        raise skipped[0]
    return vectors


def _cached_embeddings_skipping_bad(
    paths: Sequence[str | Path], embedder: Embedder, cache_dir: str | Path, show_progress_bar: bool
) -> tuple[np.ndarray, list[BadImageError]]:
    """Return the vectors of the paths that could be embedded, in order, and the errors of the others."""
    cache_file = Path(cache_dir) / f"{_safe_name(embedder.spec.vector_id())}.npz"
    skipped: list[BadImageError] = []
    digests = []
    for path in paths:
        try:
            digests.append(file_digest(path))
        except OSError as error:
            skipped.append(BadImageError(path, f"cannot read: {error.strerror or error}"))
            digests.append("")
    digest_array = np.array(digests)
    cached = _read_cache(cache_file, embedder.spec.dim)
    missing = np.unique(digest_array[~np.isin(digest_array, [*cached, ""])])
    reasons: dict[str, str] = {}
    if missing.size:
        path_of = dict(zip(digests, paths, strict=True))  # any path of a digest has its content
        digest_of = {Path(path_of[d]): d for d in missing}
        for batch in embedder.iter_encode_files(list(digest_of), show_progress_bar=show_progress_bar):
            cached.update(zip([digest_of[Path(p)] for p in batch.paths], batch.vectors, strict=True))
            reasons |= {digest_of[Path(error.path)]: error.reason for error in batch.errors}
        if len(missing) > len(reasons):
            _write_cache(cache_file, cached)
    for position, digest in enumerate(digests):
        if digest in reasons:  # every file with a bad file's content is bad
            skipped.append(BadImageError(paths[position], reasons[digest]))
            digest_array[position] = ""
    kept = digest_array != ""
    vectors = (
        np.stack([cached[d] for d in digest_array[kept]])
        if kept.any()
        else np.zeros((0, embedder.spec.dim), np.float32)
    )
    skipped.sort(key=lambda error: str(error.path))
    return vectors, skipped


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def _read_cache(cache_file: Path, dim: int) -> dict[str, np.ndarray]:
    if not cache_file.exists():
        return {}
    with np.load(cache_file) as stored:
        if stored["vectors"].shape[1:] != (dim,):
            return {}
        return dict(zip(stored["digests"].tolist(), stored["vectors"], strict=True))


def _write_cache(cache_file: Path, cached: dict[str, np.ndarray]) -> None:
    """Write atomically, so an interrupted run never leaves a truncated cache behind."""
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(".partial.npz")
    np.savez(partial, digests=np.array(list(cached)), vectors=np.stack(list(cached.values())))
    os.replace(partial, cache_file)


def labelled_images(dataset_dir: str | Path) -> tuple[list[Path], np.ndarray]:
    """Return ``(paths, labels)`` of a folder with one subfolder per label; raises when it holds none."""
    paths, labels = list_labelled_images(dataset_dir)
    if not paths:
        raise ImageRankError(_no_images_message(dataset_dir))
    return paths, labels


def _no_images_message(dataset_dir: str | Path) -> str:
    return f"{dataset_dir}: no images in label subfolders (expected DATASET/<label>/<image>)"


@dataclass(frozen=True)
class LabelledEmbeddings:
    """The images of a labelled folder that could be embedded, their labels and vectors (one array per
    model), and the files that were skipped, each with its reason."""

    paths: list[Path]
    labels: np.ndarray
    vectors: dict[str, np.ndarray]
    skipped: list[BadImageError]
    dropped_labels: dict[str, int] = field(default_factory=dict)
    """Labels left out for having fewer images than asked (``min_per_label``), with their counts."""


def embed_labelled_folder(
    dataset_dir: str | Path,
    models: Sequence[str] = (DEFAULT_MODEL,),
    min_per_label: int = 1,
    show_progress_bar: bool = False,
) -> LabelledEmbeddings:
    """List a labelled folder as `imagerank index` does, and embed it with each model (cached).

    Files that cannot be read or decoded are skipped, as indexing skips them, and returned with their
    reasons. Labels with fewer than ``min_per_label`` images (after skipping) are left out.

    Raises:
        ImageRankError: the folder holds no images in label subfolders.
    """
    paths, labels, skipped = scan_labelled_images(dataset_dir)
    if not paths:
        raise ImageRankError(_no_images_message(dataset_dir))
    vectors: dict[str, np.ndarray] = {}
    for model in models:
        parts = []
        for name in _backbones(model):
            part, bad = _cached_embeddings_skipping_bad(
                paths, create_embedder(name), cache_dir() / "embeddings", show_progress_bar
            )
            if bad:
                keep = ~np.isin([str(path) for path in paths], [str(error.path) for error in bad])
                paths, labels = [path for path, kept in zip(paths, keep, strict=True) if kept], labels[keep]
                vectors = {done: array[keep] for done, array in vectors.items()}
                parts = [array[keep] for array in parts]
                skipped.extend(bad)
            parts.append(part)
        vectors[model] = joined_embeddings(parts)
    counts = dict(zip(*np.unique(labels, return_counts=True), strict=True))
    dropped = {str(label): int(count) for label, count in counts.items() if count < min_per_label}
    if dropped:
        keep = ~np.isin(labels, list(dropped))
        paths, labels = drop_small_labels(paths, labels, min_per_label)
        vectors = {model: array[keep] for model, array in vectors.items()}
    if not paths:
        raise ImageRankError(
            f"{dataset_dir}: no label has {min_per_label} images that could be read; use a smaller "
            "--min-per-label"
        )
    return LabelledEmbeddings(paths, labels, vectors, sorted(skipped, key=lambda e: str(e.path)), dropped)


def dataset_embeddings(
    paths: Sequence[str | Path], model: str = DEFAULT_MODEL, show_progress_bar: bool = False
) -> np.ndarray:
    """Return one vector per path, embedding only files the on-disk cache has not seen.

    ``model`` may join backbones with ``+`` (``mobilenet_v2+efficientnet_lite0``): the vectors are then
    :func:`joined_embeddings` of each backbone's, so learned methods see what either backbone saw.
    """
    return joined_embeddings(
        [
            cached_embeddings(
                paths, create_embedder(name), cache_dir() / "embeddings", show_progress_bar=show_progress_bar
            )
            for name in _backbones(model)
        ]
    )


def _backbones(model: str) -> list[str]:
    backbones = [name.strip() for name in model.split("+")]
    if "" in backbones:
        raise ValueError(
            f"empty backbone name in {model!r}; join backbones as 'mobilenet_v2+efficientnet_lite0'"
        )
    return backbones


def joined_embeddings(parts: Sequence[np.ndarray]) -> np.ndarray:
    """Return each part's unit rows side by side, scaled by ``1 / sqrt(len(parts))``.

    The result has unit rows, and the cosine of two of them is the mean of the parts' cosines, so every
    method works on it unchanged and no backbone outweighs another. One part comes back unit-normalised.
    """
    return np.hstack([normalized(part) for part in parts]) / np.float32(np.sqrt(len(parts)))
