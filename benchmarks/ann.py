"""Approximate search at scale: each index layout of the embedded store on a million vectors.

Usage:
    python benchmarks/ann.py [--vectors 1000000] [--types flat,fp16,sq8,hnsw,ivfpq] [--seed 0]

The collection is the real Caltech-101 MobileNetV2 embeddings plus `--vectors` drawn from a Gaussian mixture
fitted to them: one component per label (its mean, weighted by the label's frequency) sharing one covariance,
the probabilistic-PCA fit of the within-label residuals (their top 256 principal axes, 85% of their variance,
plus isotropic noise carrying the rest), L2-normalised like real embeddings. The same seed gives the same
vectors.

The vectors go once into a real `FaissStore` (SQLite); each layout is then built from it the way `imagerank
index --index-type TYPE` builds it, and measured through `FaissStore.search` (exact re-ranking included):
build time, bytes per vector of the index in memory, single-query p50/p99 on one thread, batch queries/s on
two, recall@10 against exact search (the same queries for every layout), and P@10 of the seed protocol's
510 Caltech queries over the whole collection (a generated vector's label is its mixture component).
Memory bandwidth is measured in the same run by a numpy copy of a 2 GiB array (bytes read + written per
second); exact flat search is reported as the share of it that one query's scan moves.

The default learned ranking method through `Index.search` on the same million, per layout, against exact:
`benchmarks/ann_learned.py`.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.decomposition import PCA

from imagerank.evaluation.embeddings import dataset_embeddings, labelled_images
from imagerank.evaluation.protocols import SEED_PROTOCOL
from imagerank.store.ann import recall_at_k
from imagerank.store.base import ImageRecord
from imagerank.store.faiss_store import FaissStore

DATASET = Path(__file__).resolve().parents[2] / "shared/datasets/caltech101/101_ObjectCategories"
CHUNK = 20_000


@dataclass
class MixtureGenerator:
    """Per-label means + a shared low-rank-plus-isotropic covariance, fitted to real embeddings."""

    means: np.ndarray
    weights: np.ndarray
    components: np.ndarray
    noise_std: float
    labels: np.ndarray

    @classmethod
    def fit(cls, vectors: np.ndarray, labels: np.ndarray, rank: int = 256) -> MixtureGenerator:
        names, index = np.unique(labels, return_inverse=True)
        means = np.stack([vectors[index == i].mean(axis=0) for i in range(len(names))])
        analysis = PCA(random_state=0).fit(vectors - means[index])
        spread = np.sqrt(analysis.explained_variance_[:rank])[:, None]
        return cls(
            means=means.astype(np.float32),
            weights=np.bincount(index) / len(index),
            components=(analysis.components_[:rank] * spread).astype(np.float32),
            noise_std=float(np.sqrt(analysis.explained_variance_[rank:].mean())),
            labels=names,
        )

    def chunks(self, count: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(unit vectors, label names) in chunks; the same seed gives the same sequence."""
        rng = np.random.default_rng(seed)
        rank, dim = self.components.shape
        for start in range(0, count, CHUNK):
            size = min(CHUNK, count - start)
            component = rng.choice(len(self.means), size, p=self.weights)
            vectors = (
                self.means[component] + rng.standard_normal((size, rank), dtype=np.float32) @ self.components
            )
            vectors += rng.standard_normal((size, dim), dtype=np.float32) * self.noise_std
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            yield vectors, self.labels[component]


def caltech_and_mixture(console: Console) -> tuple[np.ndarray, np.ndarray, MixtureGenerator] | None:
    """The real Caltech-101 MobileNetV2 embeddings (cached), their labels and the mixture fitted to them;
    None, having said so, when the dataset is absent."""
    if not DATASET.is_dir():
        console.print(f"skipped: the Caltech-101 dataset is not at {DATASET}")
        return None
    paths, labels = labelled_images(DATASET)
    real = dataset_embeddings(paths, "mobilenet_v2", show_progress_bar=True)
    return real, labels, MixtureGenerator.fit(real, labels)


def copy_bandwidth(gib: float = 2.0) -> float:
    """Bytes read + written per second by a numpy copy of a large array (best of three)."""
    source = np.ones(int(gib * 2**30) // 4, dtype=np.float32)
    target = np.empty_like(source)
    best = min(_seconds(lambda: np.copyto(target, source)) for _ in range(3))
    return 2 * source.nbytes / best


def _seconds(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def filled_store(
    directory: Path, real: np.ndarray, real_labels: np.ndarray, generator, count: int, seed: int
):
    """A flat store holding the real vectors (ids 1..n_real) then `count` generated ones; all vectors."""
    store = FaissStore(directory, real.shape[1], "flat")
    everything, labels = [real], [real_labels]
    store.upsert(_records(real_labels, 0), real)
    for vectors, names in generator.chunks(count, seed):
        store.upsert(_records(names, sum(len(part) for part in labels)), vectors)
        everything.append(vectors)
        labels.append(names)
    store.flush()
    store.close()
    return np.concatenate(everything), np.concatenate(labels)


def _records(labels: np.ndarray, start: int) -> list[ImageRecord]:
    return [
        ImageRecord(
            path=f"v{start + i:08d}", label=str(label), digest="", size=0, mtime_ns=0, width=0, height=0
        )
        for i, label in enumerate(labels)
    ]


def measure_layout(
    directory: Path, dim: int, index_type: str, queries: np.ndarray, truth: np.ndarray
) -> dict:
    faiss.omp_set_num_threads(2)
    start = time.perf_counter()
    store = FaissStore(directory, dim, index_type)
    build = time.perf_counter() - start
    store.flush()
    index_bytes = store.describe()["index_bytes"]
    faiss.omp_set_num_threads(1)
    single = [_seconds(lambda q=q: store.search(q[None], 10)) for q in queries[:300]]
    faiss.omp_set_num_threads(2)
    batch_seconds = _seconds(lambda: store.search(queries, 10))
    _, found = store.search(queries, 10)
    row = {
        "layout": store.plan.describe(),
        "build_s": build,
        "bytes_per_vector": index_bytes / len(store),
        "p50_ms": 1e3 * float(np.median(single)),
        "p99_ms": 1e3 * float(np.percentile(single, 99)),
        "batch_qps": len(queries) / batch_seconds,
        "recall": recall_at_k(found, truth),
        "store": store,
    }
    return row


def seed_precision(
    store: FaissStore, vectors: np.ndarray, labels: np.ndarray, query_rows: np.ndarray
) -> float:
    """P@10 of the seed queries over the whole collection, each query itself left out (ids are rows + 1)."""
    _, found = store.search(vectors[query_rows], 11)
    precision = []
    for row, ids in zip(query_rows, found, strict=True):
        neighbours = [i - 1 for i in ids if i > 0 and i - 1 != row][:10]
        precision.append(np.mean(labels[neighbours] == labels[row]))
    return float(np.mean(precision))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vectors", type=int, default=1_000_000, help="generated vectors (besides the real)")
    parser.add_argument("--types", default="flat,fp16,sq8,hnsw,ivfpq")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where the store goes (default: a temp dir)"
    )
    args = parser.parse_args()
    console = Console(width=200)
    caltech = caltech_and_mixture(console)
    if caltech is None:
        return
    real, real_labels, generator = caltech
    bandwidth = copy_bandwidth()
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        start = time.perf_counter()
        vectors, labels = filled_store(Path(workdir), real, real_labels, generator, args.vectors, args.seed)
        console.print(f"{len(vectors):,} vectors stored in {time.perf_counter() - start:.0f} s")
        rng = np.random.default_rng(args.seed + 1)
        query_rows = rng.choice(len(vectors), args.queries, replace=False)
        queries = vectors[query_rows]
        faiss.omp_set_num_threads(2)
        _, truth = faiss.knn(queries, vectors, 10, metric=faiss.METRIC_INNER_PRODUCT)
        truth += 1  # store ids are rows + 1
        seed_split = SEED_PROTOCOL.split(real_labels)
        rows = []
        for index_type in args.types.split(","):
            row = measure_layout(Path(workdir), vectors.shape[1], index_type, queries, truth)
            row["seed_p10"] = seed_precision(row.pop("store"), vectors, labels, seed_split.queries)
            rows.append(row)
            console.print(row)
    show(console, rows, bandwidth, len(vectors), vectors.shape[1])


def show(console: Console, rows: list[dict], bandwidth: float, count: int, dim: int) -> None:
    table = Table(title=f"{count:,} vectors x {dim} (real Caltech-101 + Gaussian mixture), 2 cores")
    for column in (
        "layout",
        "build s",
        "bytes/vector",
        "p50 ms",
        "p99 ms",
        "batch q/s",
        "recall@10",
        "seed P@10",
    ):
        table.add_column(column, justify="left" if column == "layout" else "right")
    for row in rows:
        table.add_row(
            row["layout"],
            f"{row['build_s']:.0f}",
            f"{row['bytes_per_vector']:.0f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['batch_qps']:.0f}",
            f"{row['recall']:.3f}",
            f"{row['seed_p10']:.4f}",
        )
    console.print(table)
    console.print(
        f"memory bandwidth, numpy copy of 2 GiB on one thread: {bandwidth / 2e9:.1f} GB/s copied "
        f"({bandwidth / 1e9:.1f} GB/s read + written)"
    )
    flat = next((row for row in rows if row["layout"].startswith("flat")), None)
    if flat:
        scanned = count * dim * 4 / (flat["p50_ms"] / 1e3)
        console.print(
            f"exact flat search, one query on one thread, scans {scanned / 1e9:.1f} GB/s: "
            f"{scanned / (bandwidth / 2):.0%} of the copy rate, {scanned / bandwidth:.0%} of read + written"
        )


if __name__ == "__main__":
    main()
