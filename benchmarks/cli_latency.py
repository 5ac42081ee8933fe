"""How long `imagerank` commands take from a user's prompt: a new process each run, median of many.

Usage:
    python benchmarks/cli_latency.py [--runs 15] [--vectors 10000] [--compare-src OLD/src]

Builds a temporary index of the shipped sample (80 real images, mobilenet_v2) padded with random unit
vectors to --vectors in all, runs one search by file untimed (it caches the ONNX export, as a user's first
search does), then times each command --runs times, each run a fresh interpreter (`python -m imagerank`):
the operating system's file cache is warm, the process is cold. The baseline is `python -c pass`, the cost
of starting the interpreter, measured in the same run. With --compare-src (the `src` folder of another
checkout, e.g. the commit before a change) the same commands are also timed with that code on the same index.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from imagerank import Index
from imagerank.embedding.embedder import l2_normalized
from imagerank.store.base import ImageRecord

SRC = Path(__file__).resolve().parents[1] / "src"
SAMPLE = SRC.parent / "sample" / "caltech101"
QUERY = SAMPLE / "pizza" / "image_0001.jpg"
TARGETS_S = {"imagerank --help": 0.3, "search --id N": 1.0, "search FILE": 2.0}
console = Console(width=150)


def build_index(directory: Path, total: int) -> tuple[Path, int]:
    """The sample's real vectors plus random unit vectors up to `total`; returns the index and a real id."""
    images = directory / "images"
    shutil.copytree(SAMPLE, images)
    with Index.create(directory / "bench.index") as index:
        index.sync(images)
        rng = np.random.default_rng(0)
        padding = max(0, total - len(index))
        for start in range(0, padding, 2000):
            count = min(2000, padding - start)
            records = [
                ImageRecord(f"synthetic/{start + n:06d}.jpg", "synthetic", "", 0, 0, 1, 1)
                for n in range(count)
            ]
            index.store.upsert(records, l2_normalized(rng.standard_normal((count, index.store.dim))))
        index.store.flush()
        ids = {record.path: record.id for record in index.store.all_records()}
    return directory / "bench.index", int(ids["pizza/image_0002.jpg"] or 0)


def timed_runs(command: list[str], src: Path, runs: int) -> list[float]:
    """Wall-clock seconds of `runs` fresh processes of `command`, with `src` first on the import path."""
    env = {**os.environ, "PYTHONPATH": str(src), "COLUMNS": "120"}
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        seconds.append(time.perf_counter() - started)
        if completed.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{completed.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--compare-src", type=Path, help="another checkout's src folder, timed the same way")
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="cli-latency-") as folder:
        index_dir, image_id = build_index(Path(folder), args.vectors)
        cli = [python, "-m", "imagerank"]
        commands = {
            "python -c pass (baseline)": [python, "-c", "pass"],
            "imagerank --help": [*cli, "--help"],
            "search --id N": [*cli, "search", "--id", str(image_id), "--index", str(index_dir), "-k", "10"],
            "search FILE": [*cli, "search", str(QUERY), "--index", str(index_dir), "-k", "10"],
        }
        sources = {"this checkout": SRC}
        if args.compare_src:
            sources["--compare-src"] = args.compare_src.resolve()
        for src in sources.values():  # untimed: caches the ONNX export, as a user's first search does
            timed_runs(commands["search FILE"], src, 1)
        table = Table(
            title=f"CLI latency: {args.runs} fresh processes each, {args.vectors:,} vectors, "
            f"{os.cpu_count()} cores"
        )
        for column in ("command", "code", "median s", "min s", "max s", "x baseline", "target s"):
            table.add_column(column, justify="left" if column in ("command", "code") else "right")
        baseline = statistics.median(timed_runs(commands["python -c pass (baseline)"], SRC, args.runs))
        table.add_row("python -c pass (baseline)", "", f"{baseline:.3f}", "", "", "1.0", "")
        for name, command in list(commands.items())[1:]:
            for code, src in sources.items():
                seconds = timed_runs(command, src, args.runs)
                median = statistics.median(seconds)
                met = "met" if median < TARGETS_S[name] else "MISSED"
                verdict = f"{TARGETS_S[name]:.1f} {met}" if code == "this checkout" else ""
                table.add_row(
                    name,
                    code,
                    f"{median:.3f}",
                    f"{min(seconds):.3f}",
                    f"{max(seconds):.3f}",
                    f"{median / baseline:.1f}",
                    verdict,
                )
        console.print(table)


if __name__ == "__main__":
    main()
