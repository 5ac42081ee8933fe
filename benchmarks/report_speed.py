"""Time of `imagerank report` per stage on the full Caltech-101, with cached embeddings (target: under 60 s).

Usage:
    python benchmarks/report_speed.py [--dataset DIR] [--methods random,cosine,lda] [--out DIR]

The embedding cache (under $IMAGERANK_CACHE, default ~/.cache/imagerank) is filled first if needed, untimed:
the target is for a second run. The baseline, measured in the same run, is the bare evaluation (listing,
cached embeddings, fitting and scoring every method) with no figure: the table shows what the report adds.
CPU seconds are printed beside wall seconds because on a shared machine wall time depends on the neighbours.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from imagerank.report.html import build_report, dataset_embeddings, evaluate_dataset, labelled_images

DATASET = Path(__file__).resolve().parents[2] / "shared/datasets/caltech101/101_ObjectCategories"
TARGET_SECONDS = 60.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--methods", default="random,cosine,lda")
    parser.add_argument("--out", type=Path, default=None, help="report folder [default: a temporary one]")
    args = parser.parse_args()
    console = Console()
    if not args.dataset.is_dir():
        console.print(f"no dataset at {args.dataset}; skipping")
        return
    methods = [name.strip() for name in args.methods.split(",")]
    paths, _ = labelled_images(args.dataset)
    console.print(f"{len(paths):,} images; filling the embedding cache if needed (untimed)")
    dataset_embeddings(paths, show_progress_bar=True)

    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    evaluate_dataset(args.dataset, methods=methods)
    baseline_wall, baseline_cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu

    out = args.out or Path(tempfile.mkdtemp(prefix="imagerank-report-")) / "report"
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()
    report = build_report(args.dataset, out, methods=methods)
    total_wall, total_cpu = time.perf_counter() - start_wall, cpu_seconds() - start_cpu

    table = Table(
        title=f"imagerank report on {args.dataset.name} ({os.cpu_count()} CPUs, methods {args.methods})"
    )
    for column in ("stage", "seconds", "share"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, seconds in report.seconds.items():
        table.add_row(stage, f"{seconds:.1f}", f"{seconds / total_wall:.0%}")
    table.add_section()
    table.add_row("report, total wall", f"{total_wall:.1f}", "100%")
    table.add_row("report, total CPU", f"{total_cpu:.1f}", "")
    table.add_row(
        "baseline: evaluation alone, wall", f"{baseline_wall:.1f}", f"x{total_wall / baseline_wall:.1f}"
    )
    table.add_row(
        "baseline: evaluation alone, CPU", f"{baseline_cpu:.1f}", f"x{total_cpu / baseline_cpu:.1f}"
    )
    console.print(table)
    verdict = "meets" if total_wall < TARGET_SECONDS else "misses"
    load = os.getloadavg()[0]
    console.print(
        f"{verdict} the {TARGET_SECONDS:.0f} s target (load average {load:.1f}); report at {report.html}"
    )


if __name__ == "__main__":
    main()
