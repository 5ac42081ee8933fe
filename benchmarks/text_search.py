"""Search by words with the offline bridge: quality on Caltech-101 and query latency at 10k images.

Usage:
    python benchmarks/text_search.py [--model mobilenet_v2] [--vectors 10000] [--skip-quality]

1. Quality (`imagerank.evaluation.text.evaluate_text`, what `imagerank evaluate --text` prints): each of the
   102 folder names is a query; zero-shot ranks all 9,144 images with no label, with labels ranks the seed
   protocol's 1,530 candidates with its training images labelled; then zero-shot after one round of
   feedback (each name's first 10 results marked by their folders, the words searched again with the
   marks). A second table counts only the images beyond that first page, the ones a user has not seen:
   P@10 of the next 10 without the marks against the refined first 10 less the images marked relevant.
2. Speed: the bridge fitted on `--vectors` vectors (the real Caltech-101 vectors, repeated with a little
   noise to reach the count), without and with labels. Measured: `fit` once, then `score` for 102 texts
   (the folder names as words, each asked twice; the first call of the process, which loads MiniLM, is
   left out), p50 and p95. The baseline in the same run is an image query's exact cosine scan over the
   same vectors (one matrix-vector product). The last row adds feedback to the zero-shot searches:
   10 images marked (3 relevant, 7 not), the text's scores refined by them (`feedback_refined_scores`).
   One process, nothing else meant to run beside it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from imagerank.evaluation.embeddings import dataset_embeddings, labelled_images
from imagerank.evaluation.protocols import SEED_PROTOCOL
from imagerank.evaluation.text import evaluate_text
from imagerank.ranking import feedback_refined_scores, normalized
from imagerank.text.bridge import BridgeTextRanker, query_words

DATASET = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "caltech101" / "101_ObjectCategories"
console = Console(width=150)


def quality_table(vectors: np.ndarray, labels: np.ndarray, model: str) -> Table:
    started = time.perf_counter()
    result = evaluate_text(vectors, labels, model, SEED_PROTOCOL)
    seconds = time.perf_counter() - started
    table = Table(title=f"Search by words, {model}, Caltech-101: each folder name a query ({seconds:.0f} s)")
    for column in ["setting", "images ranked", "mean P@10", "mAP", "names at P@10 = 0"]:
        table.add_column(column, justify="right")
    for setting, scores in [
        ("zero-shot", result.zero_shot),
        ("with labels (seed)", result.with_labels),
        ("zero-shot, then feedback on the first 10", result.after_feedback),
    ]:
        table.add_row(
            setting,
            str(scores.n_ranked),
            f"{scores.mean_precision:.4f}",
            f"{scores.mean_average_precision:.4f}",
            str(len(scores.names_at_zero)),
        )
    console.print(table)
    console.print("zero-shot names at 0: " + ", ".join(result.zero_shot.names_at_zero), highlight=False)
    return table


def unseen_images_table(vectors: np.ndarray, labels: np.ndarray, model: str, k: int = 10) -> Table:
    """P@k over the images beyond each name's first page: what feedback on that page finds that is new."""
    ranker = BridgeTextRanker(model).fit(vectors, [None] * len(labels))
    unit = normalized(vectors)
    without, with_marks = [], []
    for name in sorted(set(labels.tolist())):
        scores = np.asarray(ranker.score(name), dtype=np.float64)
        order = np.argsort(-scores, kind="stable")
        first_page, rest = order[:k], order[k:]
        marked_relevant = labels[first_page] == name
        refined = feedback_refined_scores(
            scores, unit, first_page[marked_relevant], first_page[~marked_relevant]
        )
        refined[first_page[marked_relevant]] = -np.inf  # seen already: count only new images
        without.append(np.mean(labels[rest[:k]] == name))
        with_marks.append(np.mean(labels[np.argsort(-refined, kind="stable")[:k]] == name))
    table = Table(title=f"Images beyond the first page, {model}: P@{k} of the next {k} for each name")
    for column in ["setting", f"mean P@{k}", f"names at P@{k} = 0"]:
        table.add_column(column, justify="right")
    for setting, values in [("without feedback", without), ("with the first page marked", with_marks)]:
        table.add_row(setting, f"{np.mean(values):.4f}", str(int(np.sum(np.asarray(values) == 0))))
    console.print(table)
    return table


def scaled(vectors: np.ndarray, labels: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` unit vectors: the real ones, then copies with a little Gaussian noise."""
    rng = np.random.default_rng(0)
    picks = np.arange(count) % len(vectors)
    grown = vectors[picks] + (picks != np.arange(count))[:, None] * rng.normal(
        0, 0.01, (count, vectors.shape[1])
    )
    grown /= np.linalg.norm(grown, axis=1, keepdims=True)
    return grown.astype(np.float32), labels[picks]


def milliseconds(call, inputs: list) -> list[float]:
    times = []
    for item in inputs:
        started = time.perf_counter()
        call(item)
        times.append((time.perf_counter() - started) * 1000)
    return times


def speed_table(vectors: np.ndarray, labels: np.ndarray, model: str, count: int) -> None:
    grown, grown_labels = scaled(vectors, labels, count)
    texts = [query_words(name) for name in sorted(set(labels.tolist()))] * 2
    queries = grown[np.random.default_rng(1).choice(count, len(texts))]
    table = Table(title=f"Text query latency, {model}, {count:,} images (ms; fit in s)")
    for column in ["path", "fit s", "p50 ms", "p95 ms", "p50 / cosine scan"]:
        table.add_column(column, justify="right")
    baseline = milliseconds(lambda query: np.argsort(-(grown @ query))[:10], list(queries))
    base_p50 = statistics.median(baseline)
    table.add_row("image query, cosine scan (baseline)", "-", f"{base_p50:.2f}", _p95(baseline), "1.0")
    known = [str(label) if position % 2 else None for position, label in enumerate(grown_labels)]
    rankers = {}
    for name, fit_labels in [("text, zero-shot (no labels)", [None] * count), ("text, half labelled", known)]:
        started = time.perf_counter()
        ranker = rankers[name] = BridgeTextRanker(model).fit(grown, fit_labels)
        fit_seconds = time.perf_counter() - started
        ranker.score("warm up")  # loads MiniLM and the class embeddings once per process
        times = milliseconds(lambda text, ranker=ranker: np.argsort(-ranker.score(text))[:10], texts)
        p50 = statistics.median(times)
        table.add_row(name, f"{fit_seconds:.1f}", f"{p50:.2f}", _p95(times), f"{p50 / base_p50:.1f}")
    marks = np.random.default_rng(2).choice(count, 10, replace=False)  # a first page: 3 relevant, 7 not

    def refined_top(text: str) -> np.ndarray:
        scores = rankers["text, zero-shot (no labels)"].score(text)
        return np.argsort(-feedback_refined_scores(scores, grown, marks[:3], marks[3:]))[:10]

    times = milliseconds(refined_top, texts)
    p50 = statistics.median(times)
    table.add_row("text, zero-shot, 10 marked", "-", f"{p50:.2f}", _p95(times), f"{p50 / base_p50:.1f}")
    console.print(table)


def _p95(times: list[float]) -> str:
    return f"{np.percentile(times, 95):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--vectors", type=int, default=10_000)
    parser.add_argument("--skip-quality", action="store_true")
    args = parser.parse_args()
    if not DATASET.is_dir():
        raise SystemExit(f"Caltech-101 is not at {DATASET}")
    paths, labels = labelled_images(DATASET)
    vectors = dataset_embeddings(paths, args.model, show_progress_bar=True)
    if not args.skip_quality:
        quality_table(vectors, labels, args.model)
        unseen_images_table(vectors, np.asarray(labels), args.model)
    speed_table(vectors, labels, args.model, args.vectors)


if __name__ == "__main__":
    main()
