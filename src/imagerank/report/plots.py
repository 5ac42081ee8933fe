"""Figures for datasets, embeddings and evaluations; every function returns a matplotlib ``Figure``.

The figures of search results live in `retrieval` and their shared colors and helpers in `drawing`; this
module offers all of them, so ``from imagerank.report import plots`` is the one place to look.

Figures are built with ``matplotlib.figure.Figure`` directly, never through ``pyplot``: nothing global is
touched, nothing leaks, nothing is saved (the caller decides where a figure goes). In Jupyter, after
``%matplotlib inline`` (or any ``import matplotlib.pyplot``), a returned figure shows inline. matplotlib is
imported only when a figure is made.

Colors: categories use the Petroff 10-color cycle (designed to stay distinct under color-vision
deficiencies); with more labels than colors, labels are written at their class centroids instead of in a
legend. Wrong retrieval results get a thick red frame *and* a cross in their caption, so the frame is never
the only cue.

Example:
    >>> figure = precision_recall_figure(result)  # an EvaluationResult
    >>> figure.savefig("curves.png")
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from imagerank.report.drawing import (
    _LEGEND_MAX_LABELS,
    LETTERBOX_COLOR,
    PROJECTIONS,
    QUERY_COLOR,
    WRONG_COLOR,
    WRONG_MARK,
    _new_figure,
    palette,
    thumbnail,
)
from imagerank.report.retrieval import (
    QueryResults,
    confusion_figure,
    retrieval_comparison_figure,
    retrieval_grid_figure,
    top_confusions,
    top_k_confusion,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from imagerank.evaluation.evaluate import EvaluationResult

__all__ = [
    "LETTERBOX_COLOR",
    "PROJECTIONS",
    "WRONG_COLOR",
    "WRONG_MARK",
    "QueryResults",
    "confusion_figure",
    "embedding_map_figure",
    "embedding_maps_figure",
    "image_size_figure",
    "label_ap_figure",
    "label_counts_figure",
    "label_thumbnails_figure",
    "palette",
    "precision_recall_figure",
    "project_2d",
    "retrieval_comparison_figure",
    "retrieval_grid_figure",
    "thumbnail",
    "top_confusions",
    "top_k_confusion",
]


def label_counts_figure(labels: Sequence[str] | np.ndarray, ax: Axes | None = None) -> Figure:
    """Return a horizontal bar chart of images per label, most frequent first.

    Bars are horizontal so every label name is written once, unrotated; the figure grows with the number
    of labels, so 100+ labels stay readable at natural size.
    """
    names, counts = np.unique(np.asarray(labels), return_counts=True)
    order = np.lexsort((names, -counts))
    names, counts = names[order], counts[order]
    font = 9 if len(names) <= 30 else 7
    figure = ax.figure if ax is not None else _new_figure(7.0, max(2.5, 0.15 * len(names) + 1.2))
    ax = ax or figure.add_subplot()
    positions = np.arange(len(names))
    ax.barh(positions, counts, color=palette(1)[0])
    ax.set_yticks(positions, names, fontsize=font)
    ax.set_ylim(len(names) - 0.4, -0.6)
    ax.margins(y=0)
    ax.set_xlabel("images")
    ax.set_title(f"Images per label ({len(names)} labels, {counts.sum():,} images)")
    ax.grid(axis="x", alpha=0.3)
    for position, count in zip(positions, counts, strict=True):
        ax.text(count, position, f" {count}", va="center", fontsize=font - 1)
    ax.set_xlim(0, counts.max() * 1.12)
    return figure


def label_thumbnails_figure(
    paths: Sequence[str | Path],
    labels: Sequence[str] | np.ndarray,
    per_label: int = 4,
    thumb_px: int = 64,
    columns: int | None = None,
    seed: int = 0,
) -> Figure:
    """Return a mosaic with ``per_label`` sample thumbnails of every label, drawn reproducibly.

    The mosaic is assembled as one image shown at its natural size (one axes, not one per thumbnail),
    which keeps the figure fast to draw for 100+ labels; label names are written above their strips.
    """
    labels = np.asarray(labels)
    names = np.unique(labels)
    rng = np.random.default_rng(seed)
    columns = columns or (2 if len(names) <= 12 else 4)
    rows = -(-len(names) // columns)
    cell_width, caption, gap = per_label * thumb_px + 16, 18, 6
    cell_height = caption + thumb_px + gap
    mosaic = Image.new("RGB", (columns * cell_width, rows * cell_height), (255, 255, 255))
    corners = []
    for position, name in enumerate(names):
        members = np.flatnonzero(labels == name)
        chosen = np.sort(rng.choice(members, min(per_label, len(members)), replace=False))
        left, top = (position % columns) * cell_width, (position // columns) * cell_height
        for slot, index in enumerate(chosen):
            mosaic.paste(thumbnail(paths[index], thumb_px), (left + slot * thumb_px, top + caption))
        corners.append((left, top, f"{name} ({len(members)})"))
    title_inches = 0.4
    figure = _new_figure(mosaic.width / 100, mosaic.height / 100 + title_inches, layout=None)
    ax = figure.add_axes((0, 0, 1, mosaic.height / 100 / figure.get_size_inches()[1]))
    ax.imshow(np.asarray(mosaic))
    for left, top, text in corners:
        ax.text(left + 1, top + caption - 4, text, fontsize=8, va="bottom")
    ax.set_axis_off()
    title_y = 1 - 0.08 / figure.get_size_inches()[1]
    figure.suptitle(f"{per_label} sample images per label", y=title_y, va="top", fontsize=11)
    return figure


def image_size_figure(sizes: np.ndarray) -> Figure:
    """Return image widths against heights (left) and the spread of aspect ratios (right).

    Args:
        sizes: ``(n_images, 2)`` array of (width, height) in pixels.
    """
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    figure = _new_figure(10.0, 4.2)
    scatter, histogram = figure.subplots(1, 2)
    color = palette(1)[0]
    scatter.scatter(sizes[:, 0], sizes[:, 1], s=6, alpha=0.25, color=color, linewidths=0)
    scatter.set_xlabel("width (px)")
    scatter.set_ylabel("height (px)")
    median = np.median(sizes, axis=0)
    scatter.set_title(f"Image sizes (median {median[0]:.0f} x {median[1]:.0f} px)")
    scatter.grid(alpha=0.3)
    aspect = sizes[:, 0] / np.maximum(sizes[:, 1], 1)
    histogram.hist(aspect, bins=40, color=color)
    histogram.axvline(1.0, color=QUERY_COLOR, linestyle=":", linewidth=1)
    histogram.set_xlabel("aspect ratio (width / height)")
    histogram.set_ylabel("images")
    histogram.set_title(f"Aspect ratios ({len(sizes):,} images)")
    return figure


# --- embedding maps ------------------------------------------------------------------------------------


def project_2d(vectors: np.ndarray, method: str = "pca", seed: int = 0) -> np.ndarray:
    """Return a ``(n, 2)`` projection of ``vectors``: ``"pca"`` (linear) or ``"tsne"`` (neighbourhoods).

    t-SNE runs on the first 50 principal components (standard practice: faster, less noise), with a PCA
    initialisation so the same data and seed always give the same map. It costs seconds per thousand
    points: callers map a sample of a large dataset.
    """
    from sklearn.decomposition import PCA

    vectors = np.asarray(vectors, dtype=np.float32)
    if method not in PROJECTIONS:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(PROJECTIONS)}")
    if len(vectors) < 3:
        raise ValueError(f"a 2-D map needs at least 3 points, got {len(vectors)}")
    if method == "pca":
        return PCA(2, random_state=seed).fit_transform(vectors)
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    reduced = PCA(min(50, *vectors.shape), random_state=seed).fit_transform(vectors)
    perplexity = min(30.0, (len(vectors) - 1) / 3)
    tsne = TSNE(2, perplexity=perplexity, init="pca", max_iter=500, random_state=seed, n_jobs=1)
    # One OpenMP thread: on a busy 2-core machine the threads' barriers made t-SNE 4x slower, not faster.
    with threadpool_limits(1):
        return tsne.fit_transform(reduced)


def embedding_map_figure(
    points: np.ndarray,
    labels: Sequence[str] | np.ndarray,
    title: str,
    ax: Axes | None = None,
) -> Figure:
    """Return a scatter of 2-D ``points`` colored by label.

    Up to 12 labels get a legend; with more, each label's name is written at its centroid (the median of
    its points), since no palette tells 100 colors apart.
    """
    import matplotlib.patheffects as effects

    points = np.asarray(points)
    labels = np.asarray(labels)
    names = np.unique(labels)
    figure = ax.figure if ax is not None else _new_figure(7.5, 6.5)
    ax = ax or figure.add_subplot()
    colors = palette(len(names))
    few = len(names) <= _LEGEND_MAX_LABELS
    for name, color in zip(names, colors, strict=True):
        mine = points[labels == name]
        ax.scatter(
            mine[:, 0], mine[:, 1], s=14 if few else 6, color=color, alpha=0.8, linewidths=0, label=name
        )
        if not few:
            center = np.median(mine, axis=0)
            text = ax.text(*center, name, fontsize=7, ha="center", va="center", color="black")
            text.set_path_effects([effects.withStroke(linewidth=2, foreground="white")])
    if few:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False, markerscale=1.5)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    return figure


def embedding_maps_figure(projections: Mapping[str, np.ndarray], labels: np.ndarray, title: str) -> Figure:
    """Return several maps of the same points side by side, e.g. ``{"PCA": ..., "t-SNE": ...}``."""
    few = len(np.unique(labels)) <= _LEGEND_MAX_LABELS
    panel = 5.0 if few else 6.5
    figure = _new_figure(panel * len(projections) + (1.6 if few else 0), panel)
    axes = np.atleast_1d(figure.subplots(1, len(projections)))
    for ax, (name, points) in zip(axes, projections.items(), strict=True):
        embedding_map_figure(points, labels, name, ax=ax)
        if few and ax is not axes[-1]:
            ax.get_legend().remove()
    figure.suptitle(title)
    return figure


# --- quality -------------------------------------------------------------------------------------------


def precision_recall_figure(result: EvaluationResult) -> Figure:
    """Return P@K (left) and recall@K (right) against K, one line per method of an evaluation."""
    figure = _new_figure(10.0, 4.2)
    precision_ax, recall_ax = figure.subplots(1, 2, sharex=True)
    styles = ["-", "--", "-.", ":"]
    for position, ((name, scores), color) in enumerate(
        zip(result.methods.items(), palette(len(result.methods)), strict=True)
    ):
        ks = np.arange(1, len(scores.precision_curve) + 1)
        style = {"color": color, "linestyle": styles[position % len(styles)], "linewidth": 2, "label": name}
        precision_ax.plot(ks, scores.precision_curve, **style)
        recall_ax.plot(ks, scores.recall_curve, **style)
    for ax, metric in ((precision_ax, "P@K"), (recall_ax, "recall@K")):
        ax.set_xlabel("K (results looked at)")
        ax.set_ylabel(metric)
        ax.set_ylim(0, 1.02)
        ax.set_xlim(1, None)
        ax.grid(alpha=0.3)
        ax.set_title(f"{metric}, mean over {result.n_queries} queries")
    recall_ax.legend(loc="lower right", fontsize=9)
    figure.suptitle(f"Protocol {result.protocol}: {result.n_candidates} candidates")
    return figure


def label_ap_figure(ap_by_label: Mapping[str, float], method: str, n: int = 15) -> Figure:
    """Return bars of the ``n`` best and ``n`` worst labels by mean average precision of ``method``.

    With at most ``2 n`` labels, all of them are shown in one sorted chart.
    """
    ordered = sorted(ap_by_label.items(), key=lambda item: (-item[1], item[0]))
    groups = (
        [("all labels", ordered)]
        if len(ordered) <= 2 * n
        else [
            (f"best {n} labels", ordered[:n]),
            (f"worst {n} labels", ordered[-n:]),
        ]
    )
    rows = max(len(group) for _, group in groups)
    figure = _new_figure(5.0 * len(groups), 0.22 * rows + 1.4)
    axes = np.atleast_1d(figure.subplots(1, len(groups)))
    color = palette(1)[0]
    for ax, (title, group) in zip(axes, groups, strict=True):
        names = [name for name, _ in group]
        values = [value for _, value in group]
        ax.barh(np.arange(len(group)), values, color=color)
        ax.set_yticks(np.arange(len(group)), names, fontsize=8)
        ax.set_ylim(len(group) - 0.4, -0.6)
        ax.set_xlim(0, 1)
        ax.set_xlabel("mean AP over the label's queries")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    figure.suptitle(f"Average precision per label: {method}")
    return figure


# --- qualitative grids ---------------------------------------------------------------------------------
