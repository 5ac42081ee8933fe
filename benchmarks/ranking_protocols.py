"""P@10 of ranking methods on Caltech-101 where labels cover the queries' categories and where they do not.

Usage:
    python benchmarks/ranking_protocols.py [--dataset DIR] [--features DIR] [--models mobilenet_v2,joined]
        [--methods cosine,dba+kreciprocal,probe+qe,hybrid] [--halves 100,101,102] [--searched] [--speed]
        [--seeds 1,2,3,4,5,6,7]

Protocols (columns):
- ``seed``: the reference split; every query's category has training labels.
- ``unseen<S>``: the seed split with half the categories (drawn with ``RandomState(S)``) left out of training
  entirely, and queries and candidates only from those categories: a collection nobody labelled.
- ``mixed<S>``: the same training labels, but every category's queries and candidates, so seen and unseen
  categories share one collection, as in a partly labelled photo folder.
- ``quarter``: one category in four (every fourth from the second, as in ``tests/test_evaluation.py``) left
  out of training, every category in the collection: a mostly labelled folder. ``quarter new`` is P@10 over
  the queries of the left-out categories alone, in that same ranking: photos of categories nobody labelled.
``--seeds`` adds a second table: the seed protocol's rule with other random seeds (other images train, are
searched and query), the reference seed first, and the mean over all of them: how much of a difference
between methods is the reference split's luck.
Every method is fitted with the candidates and queries as its unlabelled pool, as ``imagerank evaluate`` does,
and ranks all queries in one batch (re-rankers see every query). ``--searched`` adds the default method as
users get it: through a real index and `Index.search`, one query at a time, with the settings searches use
(`imagerank.index.fitted.SEARCH_SETTINGS`; see `imagerank.evaluation.product`).

``--features DIR`` reads ``DIR/<backbone>.npy`` and ``DIR/labels.npy`` (rows in the order of
``list_labelled_images``) instead of embedding the dataset through the cache. ``joined`` is
``mobilenet_v2+efficientnet_lite0`` (see ``imagerank.evaluation.embeddings.joined_embeddings``).

``--speed`` adds the costs a search service pays for the default method: fitting on 100,000 vectors with
100 labels, and scoring one query against 1,000 candidates (median of 50), all re-ranked together and with
the ``fallback_depth`` searches use.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from imagerank.evaluation.embeddings import dataset_embeddings, joined_embeddings
from imagerank.evaluation.evaluate import EvaluationResult, evaluate_split
from imagerank.evaluation.product import evaluate_split_through_index
from imagerank.evaluation.protocols import SEED_PROTOCOL, Protocol, Split, list_labelled_images
from imagerank.index.fitted import SEARCH_SETTINGS
from imagerank.ranking import DEFAULT_METHOD, get_method

DATASET = Path(__file__).resolve().parents[2] / "shared/datasets/caltech101/101_ObjectCategories"
JOINED = "mobilenet_v2+efficientnet_lite0"


def half_unseen(labels: np.ndarray, seed: int, only_unseen: bool) -> Split:
    """Return the seed split with a random half of the labels left out of training.

    With ``only_unseen`` the queries and candidates are those labels' only; otherwise every label's.
    """
    rng = np.random.RandomState(seed)
    distinct = np.unique(labels)
    unseen = rng.choice(distinct, len(distinct) // 2, replace=False)
    split = Protocol(name=f"unseen{seed}", unseen_labels=tuple(unseen.tolist())).split(labels)
    if not only_unseen:
        return split
    keep_candidates = np.isin(labels[split.candidates], unseen)
    keep_queries = np.isin(labels[split.queries], unseen)
    return Split(
        train=split.train, candidates=split.candidates[keep_candidates], queries=split.queries[keep_queries]
    )


def protocol_splits(labels: np.ndarray, halves: list[int]) -> dict[str, Split]:
    splits = {"seed": SEED_PROTOCOL.split(labels)}
    splits |= {f"unseen{seed}": half_unseen(labels, seed, only_unseen=True) for seed in halves}
    splits |= {f"mixed{seed}": half_unseen(labels, seed, only_unseen=False) for seed in halves}
    splits["quarter"] = Protocol(name="quarter", unseen_labels=quarter_unseen(labels)).split(labels)
    return splits


def quarter_unseen(labels: np.ndarray) -> tuple[str, ...]:
    return tuple(np.unique(labels)[1::4].tolist())


def model_vectors(model: str, dataset: Path, features: Path | None) -> tuple[np.ndarray, np.ndarray]:
    backbones = (JOINED if model == "joined" else model).split("+")
    if features is not None:
        parts = [np.load(features / f"{backbone}.npy") for backbone in backbones]
        return joined_embeddings(parts), np.load(features / "labels.npy", allow_pickle=False)
    paths, labels = list_labelled_images(dataset)
    return dataset_embeddings(paths, "+".join(backbones), show_progress_bar=True), np.asarray(labels)


def precision_table(
    model: str,
    vectors: np.ndarray,
    labels: np.ndarray,
    methods: list[str],
    halves: list[int],
    searched: bool,
) -> Table:
    """One row per method on arrays (as ``imagerank evaluate``), then the default method through an index."""
    splits = protocol_splits(labels, halves)
    table = Table(title=f"P@10, {model} on Caltech-101")
    table.add_column("method")
    for name in [*splits, "quarter new"]:
        table.add_column(name, justify="right")
    table.add_column("unseen mean", justify="right")
    new_queries = np.isin(labels[splits["quarter"].queries], quarter_unseen(labels))
    rows = {}
    for method in methods:
        results = [
            evaluate_split(vectors, labels, split, {method: get_method(method)}, name)
            for name, split in splits.items()
        ]
        rows[method] = _row(results, method, new_queries)
    if searched:
        results = [
            evaluate_split_through_index(vectors, labels, split, [DEFAULT_METHOD])
            for split in splits.values()
        ]
        rows[f"{DEFAULT_METHOD}, searched (flat index)"] = _row(results, DEFAULT_METHOD, new_queries)
    for method, row in rows.items():
        unseen = [value for name, value in zip(splits, row, strict=False) if name.startswith("unseen")]
        table.add_row(method, *(f"{value:.4f}" for value in row), f"{np.mean(unseen):.4f}")
    return table


def _row(results: list[EvaluationResult], method: str, new_queries: np.ndarray) -> list[float]:
    """Each protocol's P@10 (the quarter last), then the quarter's over its new categories' queries."""
    per_query = [result.methods[method].per_query["p@10"] for result in results]
    return [float(np.mean(values)) for values in per_query] + [float(np.mean(per_query[-1][new_queries]))]


def seed_table(
    model: str, vectors: np.ndarray, labels: np.ndarray, methods: list[str], seeds: list[int]
) -> Table:
    """P@10 of each method on the seed protocol's rule with the reference seed, then each of ``seeds``."""
    protocols = [SEED_PROTOCOL, *(replace(SEED_PROTOCOL, seed=seed) for seed in seeds)]
    table = Table(title=f"P@10, {model} on Caltech-101, the seed protocol with other seeds")
    table.add_column("method")
    for protocol in protocols:
        table.add_column(f"seed {protocol.seed}", justify="right")
    table.add_column("mean", justify="right")
    for method in methods:
        results = [
            evaluate_split(vectors, labels, protocol.split(labels), {method: get_method(method)})
            for protocol in protocols
        ]
        means = [result.methods[method].mean("p@10") for result in results]
        table.add_row(method, *(f"{mean:.4f}" for mean in means), f"{np.mean(means):.4f}")
    return table


def speed_table(vectors: np.ndarray, labels: np.ndarray) -> Table:
    """Fit the default method on 100,000 vectors of 100 labels; score 1 query against 1,000 candidates."""
    rng = np.random.default_rng(0)
    chosen = np.unique(labels)[:100]
    rows = rng.choice(np.flatnonzero(np.isin(labels, chosen)), 100_000)
    # resampled Caltech vectors with a little noise: realistic structure, no exact duplicates
    many = vectors[rows] + 0.01 * rng.standard_normal((len(rows), vectors.shape[1]), dtype=np.float32)
    many_labels = labels[rows]
    ranker = get_method(DEFAULT_METHOD)
    start = time.perf_counter()
    ranker.fit(many[:50_000], many_labels[:50_000], many[50_000:])
    fit_seconds = time.perf_counter() - start
    candidates = many[rng.choice(len(many), 1_000, replace=False)]
    medians = {}
    for fallback_depth in [None, SEARCH_SETTINGS[DEFAULT_METHOD]["fallback_depth"]]:
        ranker.fallback_depth = fallback_depth
        timings = []
        for query in many[:50]:
            start = time.perf_counter()
            ranker.score(query[None], candidates)
            timings.append(time.perf_counter() - start)
        medians[fallback_depth] = np.median(timings)
    table = Table(title=f"speed of {DEFAULT_METHOD!r} ({vectors.shape[1]} dimensions)")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("target", justify="right")
    table.add_row("fit: 50,000 labelled (100 labels) + 50,000 unlabelled", f"{fit_seconds:.1f}", "< 60")
    for fallback_depth, seconds in medians.items():
        step = f"score: 1 query x 1,000 candidates, fallback_depth={fallback_depth} (median)"
        table.add_row(step, f"{seconds:.4f}", "< 0.020")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, default=DATASET)
    parser.add_argument("--features", type=Path, default=None, help="folder of <backbone>.npy, labels.npy")
    parser.add_argument("--models", default="mobilenet_v2,joined")
    parser.add_argument("--methods", default=f"cosine,dba+kreciprocal,probe+qe,{DEFAULT_METHOD}")
    parser.add_argument("--halves", default="100,101,102", help="seeds of the random unseen halves")
    parser.add_argument("--searched", action="store_true", help="add the default method through an index")
    parser.add_argument("--speed", action="store_true", help="also time the default method's fit and score")
    parser.add_argument("--seeds", default="", help="other seeds of the seed protocol, for a second table")
    args = parser.parse_args()
    console = Console(width=150)
    halves = [int(seed) for seed in args.halves.split(",")]
    methods = args.methods.split(",")
    for model in args.models.split(","):
        vectors, labels = model_vectors(model, args.dataset, args.features)
        console.print(precision_table(model, vectors, labels, methods, halves, args.searched))
        if args.seeds:
            seeds = [int(seed) for seed in args.seeds.split(",")]
            console.print(seed_table(model, vectors, labels, methods, seeds))
        if args.speed:
            console.print(speed_table(vectors, labels))


if __name__ == "__main__":
    main()
