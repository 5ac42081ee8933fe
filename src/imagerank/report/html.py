"""The evaluation report: one folder with ``index.html`` and every figure as PNG (and SVG for charts).

``build_report(dataset_dir, out_dir)`` lists a labelled dataset, embeds it (through the evaluation module's
content-keyed cache, so a second run does not embed again), evaluates the ranking methods on a protocol, and
writes the figures of :mod:`plots` beside a page that references them by relative path: the folder
can be moved, zipped or served as it is.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from imagerank import __version__
from imagerank.embedding.models import DEFAULT_MODEL
from imagerank.errors import BadImageError
from imagerank.evaluation.embeddings import dataset_embeddings, embed_labelled_folder, labelled_images
from imagerank.evaluation.evaluate import EvaluationResult
from imagerank.evaluation.protocols import AUTO_PROTOCOL, Protocol
from imagerank.report import plots
from imagerank.report.dataset import (
    DEFAULT_METHODS,
    EvaluatedDataset,
    _evaluated,
    evaluate_dataset,
    image_sizes,
)
from imagerank.report.drawing import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "DEFAULT_METHODS",
    "EvaluatedDataset",
    "Report",
    "build_report",
    "dataset_embeddings",
    "evaluate_dataset",
    "image_sizes",
    "labelled_images",
    "save_figure",
]

logger = logging.getLogger(__name__)


@dataclass
class Report:
    """Where a report was written, its figures by name, and how long each stage took."""

    directory: Path
    html: Path
    figures: dict[str, Path]
    seconds: dict[str, float]
    protocol: Protocol
    """The protocol evaluated (``auto`` resolved to the one it picked)."""
    skipped: list[BadImageError] = field(default_factory=list)


class _Stages:
    """Times named stages; when shown, prints a spinner while each runs and a line when it ends."""

    def __init__(self, show: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True) if show else None
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, spinner: bool = True) -> Iterator[None]:
        start = time.perf_counter()
        status = self.console.status(f"{name}...") if self.console and spinner else nullcontext()
        with status:
            yield
        elapsed = time.perf_counter() - start
        self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
        logger.info("%s: %.1f s", name, elapsed)
        if self.console:
            self.console.print(f"{name}: {elapsed:.1f} s", highlight=False)


@dataclass
class _Page:
    """The report's HTML sections, filled as figures are written."""

    directory: Path
    sections: list[tuple[str, list[str]]] = field(default_factory=list)
    figures: dict[str, Path] = field(default_factory=dict)

    def section(self, title: str) -> None:
        self.sections.append((title, []))

    def add_html(self, snippet: str) -> None:
        self.sections[-1][1].append(snippet)

    def add_figure(self, name: str, figure: Figure, caption: str, svg: bool = False) -> None:
        png = save_figure(figure, self.directory / "figures" / f"{name}.png")
        self.figures[name] = png
        link = ""
        if svg:
            self.figures[f"{name}.svg"] = save_figure(figure, png.with_suffix(".svg"))
            link = f' (<a href="figures/{name}.svg">SVG</a>)'
        self.add_html(
            f'<figure id="{name}"><img src="figures/{name}.png" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}{link}</figcaption></figure>"
        )


def build_report(
    dataset_dir: str | Path,
    out_dir: str | Path,
    protocol: Protocol = AUTO_PROTOCOL,
    models: Sequence[str] = (DEFAULT_MODEL,),
    methods: Sequence[str] = DEFAULT_METHODS,
    k: int = 10,
    n_examples: int = 6,
    map_per_label: int = 10,
    seed: int = 0,
    show_progress: bool = False,
    min_per_label: int = 1,
) -> Report:
    """Write the report on a labelled dataset to ``out_dir`` and return where everything went.

    The first model is evaluated with every method (quality, examples, confusions); every model gets an
    embedding map. Maps show up to ``map_per_label`` candidates and queries of each label, images no
    method was trained on, so a learned projection's map is not flattered by its own training data.
    Files that cannot be decoded are skipped and listed in the report, as `imagerank index` skips them.

    The folder is written under a temporary name beside ``out_dir`` and renamed into place when complete:
    a failed run leaves ``out_dir`` as it was (an earlier report stays whole).
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        report = _write_report(
            Path(dataset_dir),
            partial,
            protocol,
            models,
            methods,
            k,
            n_examples,
            map_per_label,
            seed,
            show_progress,
            min_per_label,
        )
        _replace_folder(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return Report(
        out,
        out / report.html.relative_to(partial),
        {name: out / path.relative_to(partial) for name, path in report.figures.items()},
        report.seconds,
        report.protocol,
        report.skipped,
    )


def _replace_folder(new: Path, target: Path) -> None:
    """Rename ``new`` to ``target``; an existing ``target`` is moved aside first and removed after."""
    if not target.exists():
        new.rename(target)
        return
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def _write_report(
    dataset_dir: Path,
    out: Path,
    protocol: Protocol,
    models: Sequence[str],
    methods: Sequence[str],
    k: int,
    n_examples: int,
    map_per_label: int,
    seed: int,
    show_progress: bool,
    min_per_label: int,
) -> Report:
    stage = _Stages(show_progress)
    page = _Page(out)
    with stage("embedding", spinner=False):
        embedded = embed_labelled_folder(dataset_dir, models, min_per_label, show_progress)
    with stage("evaluating"):
        data = _evaluated(embedded, models[0], protocol, methods, k)
    _dataset_section(page, stage, data, seed)
    _maps_section(page, stage, data, embedded.vectors, map_per_label, seed)
    with stage("quality figures"):
        _quality_section(page, data)
    with stage("example grids"):
        _examples_section(page, data, n_examples, seed)
    with stage("confusions"):
        _confusion_section(page, data, k)
    with stage("writing html"):
        html_path = _write_html(page, dataset_dir, data, models, stage.seconds)
    return Report(out, html_path, page.figures, stage.seconds, data.protocol, data.skipped)


def _dataset_section(page: _Page, stage: _Stages, data: EvaluatedDataset, seed: int) -> None:
    paths, labels = data.paths, data.labels
    page.section("Dataset")
    page.add_html(f"<p>{len(paths):,} images in {len(np.unique(labels))} labels.</p>")
    if data.skipped:
        items = "".join(
            f"<li><code>{html.escape(str(error.path))}</code>: {html.escape(error.reason)}</li>"
            for error in data.skipped
        )
        page.add_html(
            f"<p>{len(data.skipped)} files skipped (as <code>imagerank index</code> skips them):</p>"
        )
        page.add_html(f"<ul>{items}</ul>")
    if data.dropped_labels:
        dropped = ", ".join(f"{html.escape(name)} ({count})" for name, count in data.dropped_labels.items())
        page.add_html(f"<p>Labels left out for having too few images: {dropped}.</p>")
    with stage("dataset figures"):
        page.add_figure("label_counts", plots.label_counts_figure(labels), "Images per label", svg=True)
        thumbnails = plots.label_thumbnails_figure(paths, labels, seed=seed)
        page.add_figure("label_thumbnails", thumbnails, "Sample images of every label")
        sizes = plots.image_size_figure(image_sizes(paths))
        page.add_figure("image_sizes", sizes, "Image sizes and aspect ratios")


def _maps_section(
    page: _Page,
    stage: _Stages,
    data: EvaluatedDataset,
    vectors: dict[str, np.ndarray],
    per_label: int,
    seed: int,
) -> None:
    page.section("Embedding maps")
    ids = data.map_sample(per_label, seed)
    page.add_html(
        f"<p>{len(ids):,} candidates and queries (up to {per_label} per label; no method trained on them), "
        "projected to 2-D with PCA and t-SNE, colored by label. The maps after a method show the space that "
        "method ranks in.</p>"
    )
    spaces = {f"{model} embeddings": model_vectors[ids] for model, model_vectors in vectors.items()}
    spaces |= {f"{data.model} after {name}": space for name, space in data.learned_spaces(ids).items()}
    for title, space in spaces.items():
        with stage(f"projecting {title}"):
            projections = {
                "PCA": plots.project_2d(space, "pca", seed),
                "t-SNE": plots.project_2d(space, "tsne", seed),
            }
            figure = plots.embedding_maps_figure(projections, data.labels[ids], title)
            page.add_figure(f"map_{_slug(title)}", figure, f"Embedding map: {title}")


def _quality_section(page: _Page, data: EvaluatedDataset) -> None:
    page.section("Quality")
    page.add_html(_metrics_table(data.result))
    curves = plots.precision_recall_figure(data.result)
    page.add_figure("precision_recall", curves, "P@K and recall@K for K = 1..50", svg=True)
    for method in data.result.methods:
        if method != "random":
            figure = plots.label_ap_figure(data.ap_by_label(method), method)
            page.add_figure(
                f"label_ap_{_slug(method)}", figure, f"Best and worst labels by AP: {method}", svg=True
            )


def _examples_section(page: _Page, data: EvaluatedDataset, n_examples: int, seed: int) -> None:
    page.section("Example queries")
    best = data.best_method()
    positions = data.example_queries(n_examples, seed)
    grid = plots.retrieval_grid_figure(data.query_results(best, positions, 8), title=f"Top 8 results: {best}")
    page.add_figure(
        "results", grid, f"Reproducible sample of queries (seed {seed}); wrong results framed in red"
    )
    compared = _compared_methods(data)
    if len(compared) == 2:
        by_method = {method: data.query_results(method, positions, 5) for method in compared}
        figure = plots.retrieval_comparison_figure(by_method)
        page.add_figure("results_compared", figure, f"The same queries: {compared[0]} vs {compared[1]}")


def _compared_methods(data: EvaluatedDataset) -> list[str]:
    """Return the best method and the plain cosine baseline (or the runner-up when cosine is best)."""
    ranked = sorted(data.result.methods, key=lambda name: -data.result.methods[name].mean("map"))
    other = "cosine" if "cosine" in ranked and ranked[0] != "cosine" else next(iter(ranked[1:]), None)
    return [other, ranked[0]] if other else [ranked[0]]


def _confusion_section(page: _Page, data: EvaluatedDataset, k: int) -> None:
    page.section("Confusions")
    best = data.best_method()
    confusion, names = data.confusion(best, k)
    page.add_figure(
        "confusion", plots.confusion_figure(confusion, names, k, best), f"Top-{k} confusions", svg=True
    )
    rows = "".join(
        f"<tr><td>{html.escape(query)}</td><td>{html.escape(found)}</td><td>{share:.1%}</td></tr>"
        for query, found, share in plots.top_confusions(confusion, names, 15)
    )
    page.add_html(
        f"<table><caption>Most frequent wrong labels among the top {k} ({html.escape(best)})</caption>"
        f"<tr><th>query label</th><th>retrieved label</th><th>share of top-{k}</th></tr>{rows}</table>"
    )


def _metrics_table(result: EvaluationResult) -> str:
    header = "".join(f"<th>{html.escape(metric)}</th>" for metric in result.metric_names)
    body = []
    for method, scores in result.methods.items():
        cells = []
        for metric in result.metric_names:
            low, high = scores.interval(metric)
            cells.append(f"<td>{scores.mean(metric):.3f} <small>[{low:.3f}, {high:.3f}]</small></td>")
        body.append(f"<tr><th>{html.escape(method)}</th>{''.join(cells)}</tr>")
    return (
        f"<table><caption>Mean over {result.n_queries} queries, with 95% bootstrap intervals "
        f"(protocol {html.escape(result.protocol)}, {result.n_train} training images)</caption>"
        f"<tr><th>method</th>{header}</tr>{''.join(body)}</table>"
    )


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1300px; padding: 0 1rem; }
figure { margin: 1.5rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9rem; } table { border-collapse: collapse; margin: 1rem 0; }
td, th { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: right; } caption { text-align: left; }
small { color: #666; } nav a { margin-right: 1rem; }
"""


def _write_html(
    page: _Page, dataset_dir: Path, data: EvaluatedDataset, models: Sequence[str], seconds: dict[str, float]
) -> Path:
    nav = "".join(f'<a href="#{_slug(title)}">{html.escape(title)}</a>' for title, _ in page.sections)
    sections = "".join(
        f'<section id="{_slug(title)}"><h2>{html.escape(title)}</h2>{"".join(items)}</section>'
        for title, items in page.sections
    )
    timing = ", ".join(f"{html.escape(name)} {value:.1f} s" for name, value in seconds.items())
    document = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>imagerank report: {html.escape(dataset_dir.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_STYLE}</style></head>
<body><h1>imagerank report: {html.escape(dataset_dir.name)}</h1>
<p>Dataset <code>{html.escape(str(dataset_dir))}</code>; models {html.escape(", ".join(models))};
methods {html.escape(", ".join(data.result.methods))}; protocol {html.escape(data.protocol.describe())}.
Generated {datetime.now(UTC).isoformat(timespec="seconds")} by imagerank {__version__}.</p>
<nav>{nav}</nav>{sections}<p><small>Time per stage: {timing}.</small></p></body></html>
"""
    path = page.directory / "index.html"
    path.write_text(document, encoding="utf-8")
    return path


def _slug(text: str) -> str:
    return "".join(char if char.isalnum() else "-" for char in text.lower()).strip("-")
