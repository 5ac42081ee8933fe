"""Learned ranking through the product's search path: quality against the arrays, speed at 100k images.

Usage:
    python benchmarks/learned_search.py [--vectors 100000] [--methods cosine,probe+qe,...] [--skip-quality]

1. Quality. The seed protocol on Caltech-101 (MobileNetV2, cached embeddings) is evaluated twice per method:
   on arrays (`evaluation.evaluate.evaluate_split`, what `imagerank evaluate` prints) and through an index
   (`imagerank.evaluation.product`: training images labelled, candidates unlabelled, each query searched
   with `Index.search` among the unlabelled images), for the flat, HNSW and IVF-PQ layouts.
2. Speed. An index of `--vectors` vectors on disk: the 9,144 real Caltech-101 vectors with their 102 folder
   labels plus vectors drawn from the Gaussian mixture of `benchmarks/ann.py`, unlabelled, in the layout
   `auto` picks. Measured: fitting the default method, search by id (p50 over 200 ids), search by upload
   (embedding one real image, then the search), adding one image to the fitted index (library call,
   model loaded; it includes the staleness check), and search by id again after those adds. One process,
   nothing else meant to run beside it.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from ann import DATASET, MixtureGenerator
from rich.console import Console
from rich.table import Table

from imagerank.evaluation.embeddings import dataset_embeddings, labelled_images
from imagerank.evaluation.evaluate import evaluate_split
from imagerank.evaluation.product import evaluate_split_through_index
from imagerank.evaluation.protocols import SEED_PROTOCOL
from imagerank.index.core import Index
from imagerank.index.fitted import DEFAULT_METHOD, SHORTLIST
from imagerank.ranking import get_method
from imagerank.ranking._base import normalized
from imagerank.store.base import ImageRecord

console = Console(width=150)


def quality_table(vectors: np.ndarray, labels: np.ndarray, methods: list[str], layouts: list[str]) -> Table:
    split = SEED_PROTOCOL.split(labels)
    arrays = evaluate_split(vectors, labels, split, {m: get_method(m) for m in methods}, "seed")
    table = Table(title="Seed protocol P@10: arrays (`imagerank evaluate`) and through an index")
    for column in ["method", "arrays", *(f"index, {layout}" for layout in layouts), "seconds (flat)"]:
        table.add_column(column, justify="right")
    searched = {}
    for layout in layouts:
        searched[layout] = evaluate_split_through_index(
            vectors, labels, split, methods, "seed", index_type=layout
        )
    for method in methods:
        reference = arrays.methods[method].mean("p@10")
        cells = [f"{reference:.4f}"]
        for layout in layouts:
            value = searched[layout].methods[method].mean("p@10")
            cells.append(f"{value:.4f} ({value - reference:+.4f})")
        cells.append(f"{searched[layouts[0]].methods[method].seconds:.1f}")
        table.add_row(method, *cells)
    return table


def speed_table(vectors: np.ndarray, labels: np.ndarray, paths: list[Path], total: int) -> Table:
    generator = MixtureGenerator.fit(vectors, labels)
    table = Table(title=f"Default method ({DEFAULT_METHOD}) at {total:,} images, 2 cores")
    table.add_column("measure")
    table.add_column("value", justify="right")
    with tempfile.TemporaryDirectory(prefix="imagerank-learned-") as scratch:
        root = Path(scratch) / "photos"
        root.mkdir()
        with Index.create(Path(scratch) / "big.index") as index:
            index._claim_root(root)
            started = time.perf_counter()
            _fill(index, vectors, labels, generator, total)
            table.add_row("store filled (SQLite + layout)", f"{time.perf_counter() - started:.1f} s")
            table.add_row("layout", index.store.describe().get("layout", ""))
            started = time.perf_counter()
            fitted = index.fit()
            table.add_row(
                f"fit {DEFAULT_METHOD} ({fitted.info.n_labelled:,} labelled, {fitted.info.n_labels} labels)",
                f"{time.perf_counter() - started:.1f} s",
            )
            rng = np.random.default_rng(0)
            ids = rng.choice(len(index), 200, replace=False) + 1
            real_ids = rng.choice(len(vectors), 200, replace=False) + 1  # the real images are stored first
            for method in ("cosine", DEFAULT_METHOD):
                index.search_by_id(int(ids[0]), k=10, method=method)  # warm
                latencies = _timed(
                    lambda image_id, m=method: index.search_by_id(int(image_id), 10, method=m), ids
                )
                table.add_row(f"search by id, {method}, p50", f"{statistics.median(latencies):.1f} ms")
            for name, chosen in (("any 200 images", ids), ("200 of the real Caltech-101 images", real_ids)):
                latencies = np.asarray(_timed(lambda image_id: index.search_by_id(int(image_id), 10), chosen))
                opened = _gate_fully_open(index, fitted, chosen)
                table.add_row(
                    f"search by id, {DEFAULT_METHOD}, {name}: p50 / gate fully open (no re-ranking) / not",
                    f"{np.median(latencies):.1f} / {_median(latencies[opened])} ({opened.sum()}) / "
                    f"{_median(latencies[~opened])} ({(~opened).sum()}) ms",
                )
            queries = [paths[i] for i in rng.choice(len(paths), 40, replace=False)]
            index.embedder.encode([queries[0]])  # warm
            embed = _timed(lambda path: index.embedder.encode([path]), queries)
            upload = _timed(lambda path: index.search(path, k=10), queries)
            table.add_row("embed one query image, p50", f"{statistics.median(embed):.1f} ms")
            table.add_row(
                f"search by upload (embed + {DEFAULT_METHOD}), p50", f"{statistics.median(upload):.1f} ms"
            )
            added = []
            for position, path in enumerate(paths[100:105]):
                copy = root / f"added-{position}{path.suffix}"
                shutil.copy2(path, copy)
                started = time.perf_counter()
                report = index.add([copy])
                added.append(time.perf_counter() - started)
                assert report.indexed and not report.fitted
            table.add_row(
                "add one image to the fitted index, median of 5", f"{statistics.median(added):.2f} s"
            )
            after = _timed(lambda image_id: index.search_by_id(int(image_id), 10), ids)
            table.add_row(
                f"search by id, {DEFAULT_METHOD}, p50, after the adds (not refitted)",
                f"{statistics.median(after):.1f} ms",
            )
    return table


def _median(latencies: np.ndarray) -> str:
    return f"{np.median(latencies):.1f}" if len(latencies) else "-"


def _gate_fully_open(index: Index, fitted, ids: np.ndarray) -> np.ndarray:
    """Per id, whether the default method's gate is fully open for it as a query (its search skips the
    unsupervised re-ranking), computed as `search_fitted` computes it."""
    ranker = fitted.ranker
    opened = []
    for image_id in ids:
        query = index.store.vectors([int(image_id)])
        _, shortlist = index.store.search(query, SHORTLIST + 1)
        kept = shortlist[(shortlist >= 0) & (shortlist != image_id)]
        candidates = normalized(index.store.vectors(kept.tolist()))
        query = normalized(query)
        gate = ranker.gate(query, ranker.logits(query), ranker.logits(candidates), query @ candidates.T)
        opened.append(bool(gate[0, 0] == 1.0))
    return np.asarray(opened)


def _fill(
    index: Index, vectors: np.ndarray, labels: np.ndarray, generator: MixtureGenerator, total: int
) -> None:
    """The real vectors with their labels, then generated ones without, written as `sync` writes them."""

    def records(prefix: str, names: list[str | None]) -> list[ImageRecord]:
        return [
            ImageRecord(
                path=f"{prefix}/{i}.jpg",
                label=name,
                digest=f"{prefix}{i}",
                size=1,
                mtime_ns=1,
                width=1,
                height=1,
            )
            for i, name in enumerate(names)
        ]

    index.store.upsert(records("real", labels.tolist()), vectors)
    for number, (chunk, _) in enumerate(generator.chunks(max(total - len(vectors), 0), seed=0)):
        index.store.upsert(records(f"generated{number}", [None] * len(chunk)), chunk)
    index.store.flush()


def _timed(call, items) -> list[float]:
    latencies = []
    for item in items:
        started = time.perf_counter()
        call(item)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--methods", default=f"cosine,{DEFAULT_METHOD},probe+qe,kreciprocal,dba+kreciprocal")
    parser.add_argument("--layouts", default="flat,hnsw,ivfpq")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    arguments = parser.parse_args()
    paths, labels = labelled_images(DATASET)
    vectors = dataset_embeddings(paths, "mobilenet_v2", show_progress_bar=True)
    if not arguments.skip_quality:
        methods = list(dict.fromkeys(arguments.methods.split(",")))
        console.print(quality_table(vectors, labels, methods, arguments.layouts.split(",")))
    if not arguments.skip_speed:
        console.print(speed_table(vectors, labels, paths, arguments.vectors))


if __name__ == "__main__":
    main()
