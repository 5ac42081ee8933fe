"""Insert rate and search latency at 100k vectors: a real Milvus server against the embedded FAISS store.

Usage:
    python benchmarks/milvus_vs_embedded.py [--vectors 100000] [--queries 200] [--index-type auto]

Both stores get the same random unit vectors (1280-d, MobileNetV2's size) through the `VectorStore` API
that `imagerank index` uses, in batches of 1,000, with index type `auto` (or --index-type); then each is
flushed (FAISS writes its index file; Milvus seals its segments, builds its index and loads them) and
searched with single-vector queries, k=10. Recall@10 is measured against exact search, so that a fast
but approximate answer shows as such; random vectors in 1280 dimensions have no structure for an
approximate index to use, so its recall on them is far below what it reaches on real image vectors.
Milvus is the standalone server of the `milvus` wheel (2.3.5, embedded etcd and local storage), started
on a free loopback port with its own data folder and stopped at the end, on the same machine: client and
server share the cores.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from milvus_server import MilvusProcess

from imagerank.embedding.embedder import l2_normalized
from imagerank.store.base import ImageRecord
from imagerank.store.faiss_store import FaissStore
from imagerank.store.milvus import open_milvus_store

BATCH = 1000
K = 10
console = Console(width=140)


def measure(store, vectors: np.ndarray, queries: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    started = time.perf_counter()
    for start in range(0, len(vectors), BATCH):
        chunk = vectors[start : start + BATCH]
        records = [
            ImageRecord(f"synthetic/{start + n:07d}.jpg", f"label{(start + n) % 100}", "d", 1, 1, 1, 1)
            for n in range(len(chunk))
        ]
        store.upsert(records, chunk)
    inserted = time.perf_counter() - started
    started = time.perf_counter()
    store.flush()
    flushed = time.perf_counter() - started
    store.search(queries[:5], K)  # warm up
    latencies, found = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = store.search(query[None], K)
        latencies.append((time.perf_counter() - started) * 1000)
        found.append(ids[0])
    recall = np.mean([len(set(f) & set(e)) / K for f, e in zip(found, exact, strict=True)])
    return {
        "insert/s": len(vectors) / inserted,
        "insert s": inserted,
        "flush s": flushed,
        "p50 ms": float(np.percentile(latencies, 50)),
        "p99 ms": float(np.percentile(latencies, 99)),
        "recall@10": float(recall),
        "index": store.describe().get("index_type") or store.describe().get("layout", ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--index-type", default="auto", help="auto (default), flat, hnsw, ... for both stores"
    )
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    vectors = l2_normalized(rng.standard_normal((args.vectors, args.dim)).astype(np.float32))
    queries = l2_normalized(rng.standard_normal((args.queries, args.dim)).astype(np.float32))
    _, exact_positions = faiss.knn(queries, vectors, K, faiss.METRIC_INNER_PRODUCT)
    exact = exact_positions + 1  # stores number ids from 1 in insertion order

    workdir = Path(tempfile.mkdtemp(prefix="imagerank-milvus-bench-"))
    results = {}
    server = MilvusProcess(workdir / "milvus")
    try:
        (workdir / "faiss").mkdir()
        embedded = FaissStore(workdir / "faiss", args.dim, args.index_type)
        results["embedded (FAISS + SQLite)"] = measure(embedded, vectors, queries, exact)
        embedded.close()
        server.start()
        milvus = open_milvus_store(server.location("bench"), args.dim, args.index_type)
        results[f"Milvus {server.version} server"] = measure(milvus, vectors, queries, exact)
        milvus.close()
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    table = Table(
        title=f"{args.vectors:,} x {args.dim}-d vectors, batches of {BATCH}, k={K}, {args.queries} queries"
    )
    columns = ["store", "index", "insert/s", "insert s", "flush s", "p50 ms", "p99 ms", "recall@10"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("store", "index") else "right")
    for name, row in results.items():
        table.add_row(
            name,
            str(row["index"]),
            f"{row['insert/s']:,.0f}",
            f"{row['insert s']:.1f}",
            f"{row['flush s']:.1f}",
            f"{row['p50 ms']:.2f}",
            f"{row['p99 ms']:.2f}",
            f"{row['recall@10']:.3f}",
        )
    console.print(table)
    base, other = results.values()
    console.print(
        f"Milvus / embedded: insert rate x{other['insert/s'] / base['insert/s']:.2f}, "
        f"search p50 x{other['p50 ms'] / base['p50 ms']:.2f}"
    )


if __name__ == "__main__":
    main()
