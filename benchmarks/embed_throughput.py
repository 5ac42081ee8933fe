"""Embedding throughput: end-to-end (files -> vectors) against pure inference on pre-decoded tensors.

Usage:
    python benchmarks/embed_throughput.py [--images 2000] [--models mobilenet_v2,efficientnet_lite0]

For each backbone, in one run: a plain PyTorch loop (the reference baseline), pure inference of the chosen
engine on already-decoded uint8 batches (before and after, averaged) and the full pipeline from JPEG files to
vectors (decoding in threads, overlapped with inference), both in one fresh process whose peak resident memory
is reported (it includes the 512 pre-decoded images kept for the inference runs, about 75 MiB).
Uses ../shared/datasets/caltech101 (a spread sample over all categories).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from imagerank.decoding import scan_image_files
from imagerank.embedding import create_embedder

DATASET = Path(__file__).resolve().parents[2] / "shared/datasets/caltech101/101_ObjectCategories"


def spread_sample(files: list[Path], count: int) -> list[Path]:
    """Every n-th file, so all categories (and their image sizes) are represented."""
    step = max(1, len(files) // count)
    return files[::step][:count]


def images_per_second(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def timed(function, *args) -> tuple[object, float]:
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def engine_measurements(model: str, files: list[Path], batch_size: int) -> dict:
    """In one fresh process: pure inference, then the full pipeline, then pure inference again.

    Interleaving the two and averaging the inference runs keeps drift of the machine (other tenants, clock
    changes) out of their ratio. The peak resident memory is read right after the pipeline run.
    """
    embedder = create_embedder(model)
    decoded = np.stack([embedder.prepare(path) for path in files[: min(len(files), 512)]])
    batches = [decoded[i : i + batch_size] for i in range(0, len(decoded), batch_size)]
    embedder.embed_arrays(batches[0])  # warm-up: thread pools, memory arenas

    def pure_inference() -> float:
        _, seconds = timed(lambda: [embedder.embed_arrays(batch) for batch in batches])
        return images_per_second(len(decoded), seconds)

    before = pure_inference()
    vectors, pipeline_seconds = timed(lambda: embedder.encode(files, batch_size=batch_size))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    after = pure_inference()
    return {
        "vectors": vectors,
        "inference": (before + after) / 2,
        "end_to_end": images_per_second(len(files), pipeline_seconds),
        "peak_mib": peak_mib,
        "engine": embedder.engine_name,
    }


def in_fresh_process(function, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def measure(model: str, files: list[Path], batch_size: int) -> dict[str, float]:
    row = in_fresh_process(engine_measurements, model, files, batch_size)
    reference = create_embedder(model, engine="torch")
    decoded = np.stack([reference.prepare(path) for path in files[:128]])
    reference.embed_arrays(decoded[:batch_size])
    _, torch_seconds = timed(
        lambda: [
            reference.embed_arrays(decoded[i : i + batch_size]) for i in range(0, len(decoded), batch_size)
        ]
    )
    check = reference.encode(files[:32], batch_size=batch_size)
    pytorch = images_per_second(len(decoded), torch_seconds)
    return {
        **row,
        "torch": pytorch,
        "ratio": row["end_to_end"] / row["inference"],
        "speedup": row["end_to_end"] / pytorch,
        "min_cosine": float(np.min(np.sum(check * row["vectors"][:32], axis=1))),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", default="mobilenet_v2,efficientnet_lite0")
    args = parser.parse_args()
    if not DATASET.is_dir():
        sys.exit(f"dataset not found at {DATASET}; this benchmark needs Caltech-101")
    files = spread_sample(scan_image_files(DATASET).files, args.images)

    table = Table(title=f"Embedding throughput, {len(files)} Caltech-101 files, batch {args.batch_size}")
    for column in (
        "model",
        "engine",
        "PyTorch loop img/s",
        "pure inference img/s",
        "end-to-end img/s",
        "end-to-end / inference",
        "end-to-end / PyTorch",
        "min cosine vs PyTorch",
        "end-to-end peak MiB",
    ):
        table.add_column(column, justify="right")
    for model in args.models.split(","):
        row = measure(model, files, args.batch_size)
        table.add_row(
            model,
            str(row["engine"]),
            f"{row['torch']:.1f}",
            f"{row['inference']:.1f}",
            f"{row['end_to_end']:.1f}",
            f"{row['ratio']:.2f}",
            f"{row['speedup']:.1f}x",
            f"{row['min_cosine']:.6f}",
            f"{row['peak_mib']:.0f}",
        )
    console = Console(width=160)
    console.print(table)
    console.print(
        f"cores: {os.cpu_count()}; end-to-end = files -> vectors in a fresh process (decode + infer)"
    )


if __name__ == "__main__":
    main()
