"""Ray engine throughput against the in-process engine, files -> vectors, on one machine.

Usage:
    python benchmarks/ray_throughput.py [--images 2000] [--batch-size 32] [--model mobilenet_v2]

Both engines embed the same spread sample of Caltech-101 files through `iter_encode_files`, the call the index
makes. The in-process engine runs before and after the Ray engine and its two times are averaged, so drift of
a shared machine stays out of the ratio. Ray's startup (`ray.init`, a local instance) is timed on its own, and
so is a first one-batch Ray job (Ray's worker processes start, the actor loads the model); the Ray run
measured after it still pays for starting its own actor, as every job does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from embed_throughput import DATASET, spread_sample
from rich.console import Console
from rich.table import Table

from imagerank.embedding.decoding import scan_image_files
from imagerank.embedding.embedder import Embedder
from imagerank.embedding.factory import create_embedder


def vectors_and_seconds(embedder: Embedder, files: list[Path], batch_size: int) -> tuple[np.ndarray, float]:
    """All vectors of the files, embedded as the index embeds them, and the seconds it took."""
    start = time.perf_counter()
    vectors = np.concatenate([batch.vectors for batch in embedder.iter_encode_files(files, batch_size)])
    return vectors, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="mobilenet_v2")
    args = parser.parse_args()
    if not DATASET.is_dir():
        sys.exit(f"skipped: Caltech-101 is not at {DATASET}; this benchmark needs it")
    try:
        import ray
    except ImportError:
        sys.exit("skipped: Ray is not installed (pip install 'imagerank[ray]')")
    files = spread_sample(scan_image_files(DATASET).files, args.images)
    console = Console(width=120)

    local = create_embedder(args.model)
    local.encode(files[: args.batch_size])  # warm-up: thread pools, memory arenas
    _, before = vectors_and_seconds(local, files, args.batch_size)

    start = time.perf_counter()
    ray.init(include_dashboard=False)
    startup = time.perf_counter() - start
    on_ray = create_embedder(args.model, engine="ray")
    _, one_batch = vectors_and_seconds(on_ray, files[: args.batch_size], args.batch_size)
    ray_vectors, ray_seconds = vectors_and_seconds(on_ray, files, args.batch_size)

    reference, after = vectors_and_seconds(local, files, args.batch_size)
    in_process_rate = len(files) / ((before + after) / 2)

    table = Table(title=f"{args.model}, {len(files)} Caltech-101 files, batch {args.batch_size}, one machine")
    for column in ("engine", "images", "seconds", "img/s", "ratio vs in-process"):
        table.add_column(column, justify="right")
    table.add_row(
        f"in-process ({local.engine_name})",
        str(len(files)),
        f"{before:.1f} / {after:.1f}",
        f"{in_process_rate:.1f}",
        "1.00",
    )
    table.add_row(
        "ray (local, 1 actor)",
        str(len(files)),
        f"{ray_seconds:.1f}",
        f"{len(files) / ray_seconds:.1f}",
        f"{len(files) / ray_seconds / in_process_rate:.2f}",
    )
    console.print(table)
    console.print(
        f"Ray startup (ray.init, local): {startup:.1f} s, not in the Ray row. "
        f"A first, one-batch Ray job: {one_batch:.1f} s, not in the Ray row either.\n"
        f"max |ray - in-process| over all vectors: {np.abs(ray_vectors - reference).max():.2e}. "
        f"cores: {os.cpu_count()}, load average at the end: {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
