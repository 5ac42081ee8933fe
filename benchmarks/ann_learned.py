"""The default ranking method through the product's search path on a million vectors, per index layout.

Usage:
    python benchmarks/ann_learned.py [--vectors 1000000] [--types flat,hnsw,ivfpq] [--seed 0]

An `Index` over a real `FaissStore` holds the seed split of the real Caltech-101 MobileNetV2 embeddings, its
training images with their labels, its candidates and queries without, plus `--vectors` unlabelled vectors
drawn from the Gaussian mixture of `benchmarks/ann.py` (same generator, same seed: the same vectors). The
default method is fitted on it (`Index.fit`), and each of the seed protocol's 510 queries is searched with
`Index.search(..., labels=[None], exclude=query_ids)`, as `imagerank.evaluation.product` searches it: among
the unlabelled images, the queries left out. A result is relevant when it is a candidate with the query's
label or a generated vector whose mixture component is the query's label. Per layout: P@10 of cosine and
of the default method (a cosine shortlist from the layout, re-scored exactly by the fitted method), the
default method's difference from exact search (the flat layout); whether the first `--check-queries`
queries searched one at a time give the same results; and the p50 latency of cosine and of the default
method for the first `--latency-queries` queries, one at a time on one thread, without the label filter and
the exclusions (as `imagerank search` runs: the protocol's filter reads every unlabelled id per call).

The vectors are stored once; each layout is built from them as `imagerank index --index-type` builds it.
The method is fitted once, on the first layout, and saved in the index directory; the other layouts read
that fit back, as an index whose layout changed does (the fit depends on the stored vectors, not the layout).

`Index.fit` learns the method's principal axes from at most 100,000 of the unlabelled images (a fixed random
sample, `imagerank.ranking.learned.POOL_LIMIT`) and keeps the probe's products for every image; the table
notes its peak resident memory.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from ann import MixtureGenerator, caltech_and_mixture
from rich.console import Console
from rich.table import Table

from imagerank.evaluation.protocols import SEED_PROTOCOL, Split
from imagerank.index.core import Index
from imagerank.index.fitted import (
    DEFAULT_METHOD,
)
from imagerank.store.base import ImageRecord
from imagerank.store.faiss_store import FaissStore

VECTOR_ID = "benchmark"
CHUNK = 50_000
BATCH = 20
"""Queries per `Index.search` call: the approximate layouts re-score every query's shortlist together, from
the exact vectors of all of them at once (IVF-PQ: 5 x 1,510 a query, read from SQLite)."""


@dataclass
class Collection:
    """What the store holds: each store id's label code (-1: none that counts), the queries and their ids."""

    label_of_id: np.ndarray
    query_vectors: np.ndarray
    query_codes: np.ndarray
    query_ids: set[int]
    n_unlabelled: int


def fill(
    directory: Path,
    real: np.ndarray,
    real_labels: np.ndarray,
    split: Split,
    generator: MixtureGenerator,
    count: int,
    seed: int,
) -> Collection:
    """The split (training images labelled, candidates and queries not), then `count` generated vectors
    without labels, in a flat store written to disk; the store is closed."""
    names = generator.labels  # sorted label names: a label's code is its position
    codes = np.searchsorted(names, real_labels)
    total = len(real) + count
    label_of_id = np.full(total + 1, -1, dtype=np.int16)
    store = FaissStore(directory, real.shape[1], "flat")
    parts = [
        ("train", split.train, real_labels[split.train].astype(str).tolist()),
        ("candidate", split.candidates, [None] * len(split.candidates)),
        ("query", split.queries, [None] * len(split.queries)),
    ]
    query_ids: list[int] = []
    for kind, rows, labels in parts:
        ids = store.upsert(_records(kind, 0, labels), real[rows])
        if kind == "candidate":
            label_of_id[ids] = codes[rows]
        elif kind == "query":
            query_ids = ids
    start = 0
    for vectors, components in generator.chunks(count, seed):
        ids = store.upsert(_records("generated", start, [None] * len(vectors)), vectors)
        label_of_id[ids] = np.searchsorted(names, components)
        start += len(vectors)
    store.flush()
    store.close()
    return Collection(
        label_of_id=label_of_id,
        query_vectors=real[split.queries],
        query_codes=codes[split.queries],
        query_ids=set(query_ids),
        n_unlabelled=len(split.candidates) + len(split.queries) + count,
    )


def _records(kind: str, start: int, labels: list[str | None]) -> list[ImageRecord]:
    return [
        ImageRecord(path=f"{kind}/{start + i}", label=label, digest=f"{kind}/{start + i}", size=0,
                    mtime_ns=0, width=1, height=1)
        for i, label in enumerate(labels)
    ]  # fmt: skip


def precision(ids: np.ndarray, collection: Collection) -> float:
    """Mean P@10 of the rows of ``ids`` (store ids, -1 for none), one row per seed query."""
    found = np.where(ids >= 0, collection.label_of_id[np.maximum(ids, 0)], -1)
    return float(np.mean(found[:, :10] == collection.query_codes[:, None]))


def measure(index: Index, collection: Collection, latency_queries: int, check_queries: int) -> dict:
    """P@10 of cosine and the default method (:data:`BATCH` queries a call), the same searches one query at a
    time for the first ``check_queries`` (the same results?), and single-query latency without a filter."""
    queries, exclude = collection.query_vectors, collection.query_ids
    faiss.omp_set_num_threads(2)
    row = {}
    for method in ("cosine", DEFAULT_METHOD):
        started = time.perf_counter()
        ids = np.concatenate(
            [
                index.search(queries[start : start + BATCH], 10, [None], method, exclude)[1]
                for start in range(0, len(queries), BATCH)
            ]
        )
        row[f"{method}_s"] = time.perf_counter() - started
        row[method] = precision(ids, collection)
        row[f"{method}_ids"] = ids
    faiss.omp_set_num_threads(1)
    same = sum(
        np.array_equal(index.search(query, k=10, labels=[None], exclude=exclude)[1][0], batch)
        for query, batch in zip(queries[:check_queries], row[f"{DEFAULT_METHOD}_ids"], strict=False)
    )
    row["same_as_batch"] = f"{same}/{min(check_queries, len(queries))}"
    for method in ("cosine", DEFAULT_METHOD):
        index.search(queries[0], k=10, method=method)  # warm
        latencies = []
        for query in queries[:latency_queries]:
            started = time.perf_counter()
            index.search(query, k=10, method=method)
            latencies.append(1e3 * (time.perf_counter() - started))
        row[f"{method}_p50_ms"] = statistics.median(latencies)
    faiss.omp_set_num_threads(2)
    return row


def peak_rss_gb() -> float:
    """The process's peak resident memory since the last `reset_peak_rss` (Linux), in GB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=1_000_000, help="generated vectors (besides the real)")
    parser.add_argument("--types", default="flat,hnsw,ivfpq", help="layouts; the first is fitted on")
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--check-queries", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None, help="where the index goes (default: temp)")
    args = parser.parse_args()
    console = Console(width=200)
    caltech = caltech_and_mixture(console)
    if caltech is None:
        return
    real, real_labels, generator = caltech
    split = SEED_PROTOCOL.split(real_labels)
    rows = []
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="imagerank-ann-learned-") as workdir:
        directory = Path(workdir)
        started = time.perf_counter()
        collection = fill(directory, real, real_labels, split, generator, args.vectors, args.seed)
        total = len(collection.label_of_id) - 1
        console.print(f"{total:,} vectors stored in {time.perf_counter() - started:.0f} s")
        manifest = {"vector_id": VECTOR_ID, "dim": real.shape[1], "model": VECTOR_ID}
        fit_note = ""
        for position, index_type in enumerate(args.types.split(",")):
            faiss.omp_set_num_threads(2)
            started = time.perf_counter()
            index = Index(directory, manifest, FaissStore(directory, real.shape[1], index_type))
            row = {"layout": index.store.plan.describe(), "build_s": time.perf_counter() - started}
            if position == 0:
                reset_peak_rss()
                started = time.perf_counter()
                fitted = index.fit()
                fit_note = f"Index.fit, {collection.n_unlabelled:,} unlabelled images"
                row["fit_s"] = time.perf_counter() - started
                fit_note += (
                    f"; {fitted.info.n_labelled:,} labelled in {fitted.info.n_labels} labels; "
                    f"peak resident memory during the fit {peak_rss_gb():.1f} GB"
                )
                console.print(fit_note)
            row.update(measure(index, collection, args.latency_queries, args.check_queries))
            index.close()
            del index
            gc.collect()
            console.print({key: value for key, value in row.items() if not key.endswith("_ids")})
            rows.append(row)
    show(console, rows, total, fit_note)


def show(console: Console, rows: list[dict], total: int, fit_note: str) -> None:
    table = Table(
        title=f"Seed protocol through Index.search, {total:,} vectors (real Caltech-101 + Gaussian mixture)"
    )
    columns = ["layout", "build s", "cosine P@10", f"{DEFAULT_METHOD} P@10", f"{DEFAULT_METHOD} - exact"]
    columns += ["fit s", "cosine p50 ms", f"{DEFAULT_METHOD} p50 ms", "same one by one"]
    for column in columns:
        table.add_column(column, justify="left" if column == "layout" else "right")
    exact = next((row[DEFAULT_METHOD] for row in rows if row["layout"].startswith("flat")), None)
    for row in rows:
        table.add_row(
            row["layout"],
            f"{row['build_s']:.0f}",
            f"{row['cosine']:.4f}",
            f"{row[DEFAULT_METHOD]:.4f}",
            "" if exact is None else f"{row[DEFAULT_METHOD] - exact:+.4f}",
            f"{row['fit_s']:.1f}" if "fit_s" in row else "(saved fit)",
            f"{row['cosine_p50_ms']:.1f}",
            f"{row[DEFAULT_METHOD + '_p50_ms']:.1f}",
            row["same_as_batch"],
        )
    console.print(table)
    console.print(
        f"fit: {fit_note}. P@10: the 510 queries, {BATCH} a call, among the unlabelled images "
        "(labels=[None]), the queries left out. p50: one query at a time on one thread, no label filter "
        "(as `imagerank search` runs). same one by one: the first queries searched alone, same results"
    )


if __name__ == "__main__":
    main()
