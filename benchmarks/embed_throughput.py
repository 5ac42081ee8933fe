"""Embedding throughput: end-to-end (files -> vectors) against pure inference on pre-decoded tensors.

Usage:
    python benchmarks/embed_throughput.py [--images 2000] [--models mobilenet_v2,efficientnet_lite0]

For each backbone, in one run: a plain PyTorch loop (the reference baseline), pure inference of the chosen
engine on already-decoded uint8 batches, and the full pipeline from JPEG files to vectors (decoding in
threads, overlapped with inference). Prints images/s and ratios, and the peak resident memory of the process.
Uses ../shared/datasets/caltech101 (a spread sample over all categories).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
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


def measure(model: str, files: list[Path], batch_size: int) -> dict[str, float]:
    embedder = create_embedder(model)
    reference = create_embedder(model, engine="torch")
    inference_sample = files[: min(len(files), 512)]
    decoded = np.stack([embedder.prepare(path) for path in inference_sample])
    batches = [decoded[i : i + batch_size] for i in range(0, len(decoded), batch_size)]

    embedder.embed_arrays(batches[0])  # warm-up: thread pools, memory arenas
    _, engine_seconds = timed(lambda: [embedder.embed_arrays(batch) for batch in batches])
    torch_count = min(len(decoded), 128)
    torch_batches = [decoded[i : i + batch_size] for i in range(0, torch_count, batch_size)]
    reference.embed_arrays(torch_batches[0])
    _, torch_seconds = timed(lambda: [reference.embed_arrays(batch) for batch in torch_batches])

    vectors, pipeline_seconds = timed(lambda: embedder.encode(files, batch_size=batch_size))
    check = reference.encode(files[:32], batch_size=batch_size)
    agreement = float(np.min(np.sum(check * vectors[:32], axis=1)))

    inference = images_per_second(len(decoded), engine_seconds)
    end_to_end = images_per_second(len(files), pipeline_seconds)
    return {
        "torch": images_per_second(torch_count, torch_seconds),
        "inference": inference,
        "end_to_end": end_to_end,
        "ratio": end_to_end / inference,
        "speedup": end_to_end / images_per_second(torch_count, torch_seconds),
        "min_cosine": agreement,
        "engine": embedder.engine_name,
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
        )
    console = Console()
    console.print(table)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    console.print(f"peak resident memory: {peak_mib:.0f} MiB; cores: {torch.get_num_threads()}")


if __name__ == "__main__":
    main()
