"""Figures of what a search returned: query/result grids, a comparison of methods, and top-k confusions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

from imagerank.report.drawing import QUERY_COLOR, WRONG_COLOR, WRONG_MARK, _new_figure, thumbnail


@dataclass(frozen=True)
class QueryResults:
    """One query image and its top results, best first, with their labels and scores."""

    query: Path
    query_label: str
    paths: list[Path]
    labels: list[str]
    scores: list[float]

    @property
    def correct(self) -> list[bool]:
        """Return whether each result shares the query's label."""
        return [label == self.query_label for label in self.labels]


@dataclass(frozen=True)
class _PanelGrid:
    """Rows of square image panels placed in inches, with room above each panel for its caption.

    Grids of photos have dozens of axes; placing them directly is many times faster than a layout engine
    and keeps every thumbnail at its natural pixel size (100 pixels per inch at the default 100 dpi).
    """

    rows: int
    cell_width: float
    image_height: float
    caption_height: float = 0.36
    title_height: float = 0.45
    margin: float = 0.1

    @property
    def height(self) -> float:
        return self.title_height + self.rows * (self.image_height + self.caption_height) + self.margin

    def axes(self, figure: Figure, row: int, column: int, x0: float = 0.0) -> Axes:
        """Return a new axes for the image of cell (``row``, ``column``), ``x0`` inches from the left."""
        fig_width, fig_height = figure.get_size_inches()
        left = x0 + self.margin + column * self.cell_width
        top = self.title_height + row * (self.image_height + self.caption_height) + self.caption_height
        bottom = fig_height - top - self.image_height
        rect = (
            left / fig_width,
            bottom / fig_height,
            self.image_height / fig_width,
            self.image_height / fig_height,
        )
        return figure.add_axes(rect)


def retrieval_grid_figure(
    queries: Sequence[QueryResults], title: str | None = None, thumb_inches: float = 1.1
) -> Figure:
    """Return one row per query: the query, then its results with scores; wrong results framed in red.

    Panels are axes labelled ``"query"`` or ``"result <rank> correct|wrong"`` (``Axes.get_label()``), so
    code can find them.
    """
    return retrieval_comparison_figure({title or "": queries}, thumb_inches)


def retrieval_comparison_figure(
    by_method: Mapping[str, Sequence[QueryResults]], thumb_inches: float = 1.0
) -> Figure:
    """Return the same queries ranked by several methods: one block of columns per method, side by side."""
    if not by_method or not all(by_method.values()):
        raise ValueError("no queries to show")
    widths = [1 + max(len(row.paths) for row in rows) for rows in by_method.values()]
    n_rows = max(len(rows) for rows in by_method.values())
    cell = thumb_inches + 0.08
    gap = 0.3
    grid = _PanelGrid(n_rows, cell_width=cell, image_height=thumb_inches)
    width = sum(widths) * cell + gap * (len(widths) - 1) + 2 * grid.margin
    figure = _new_figure(width, grid.height, layout=None)
    size = int(thumb_inches * 100)
    x0 = 0.0
    for (method, rows), columns in zip(by_method.items(), widths, strict=True):
        if method:
            center = (x0 + grid.margin + columns * cell / 2) / width
            figure.text(center, 1 - 0.1 / grid.height, method, ha="center", va="top", fontsize=12)
        for row, query in enumerate(rows):
            panel = grid.axes(figure, row, 0, x0)
            _image_panel(
                panel, thumbnail(query.query, size), f"query\n{query.query_label}", QUERY_COLOR, "query"
            )
            for rank, (path, label, score, right) in enumerate(
                zip(query.paths, query.labels, query.scores, query.correct, strict=True), start=1
            ):
                caption = f"{'' if right else WRONG_MARK}{score:.3f}\n{_short(label)}"
                status = "correct" if right else "wrong"
                frame = None if right else WRONG_COLOR
                panel = grid.axes(figure, row, rank, x0)
                _image_panel(panel, thumbnail(path, size), caption, frame, f"result {rank} {status}")
        x0 += columns * cell + gap
    return figure


def _image_panel(ax: Axes, image: Image.Image, caption: str, frame: str | None, name: str) -> None:
    ax.imshow(np.asarray(image))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_label(name)
    ax.set_title(caption, fontsize=8, pad=4, color=frame if frame == WRONG_COLOR else "black")
    for spine in ax.spines.values():
        spine.set_visible(frame is not None)
        if frame is not None:
            spine.set_color(frame)
            spine.set_linewidth(4 if frame == WRONG_COLOR else 2)


def _short(text: str, width: int = 16) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


# --- confusions ----------------------------------------------------------------------------------------


def top_k_confusion(
    query_labels: np.ndarray, retrieved_labels: np.ndarray, names: Sequence[str]
) -> np.ndarray:
    """Return ``C[i, j]``: the share of the top-K results of label-``i`` queries that have label ``j``.

    Args:
        query_labels: one label per query.
        retrieved_labels: ``(n_queries, k)`` labels of each query's top results.
        names: the label order of the rows and columns.
    """
    position = {name: i for i, name in enumerate(names)}
    rows = np.array([position[label] for label in np.asarray(query_labels)])
    cols = np.vectorize(position.__getitem__, otypes=[int])(np.asarray(retrieved_labels))
    counts = np.zeros((len(names), len(names)))
    np.add.at(counts, (np.repeat(rows, cols.shape[1]), cols.ravel()), 1.0)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)


def top_confusions(confusion: np.ndarray, names: Sequence[str], n: int = 10) -> list[tuple[str, str, float]]:
    """Return the ``n`` largest off-diagonal shares as ``(query label, retrieved label, share)``."""
    off = np.array(confusion, dtype=np.float64)
    np.fill_diagonal(off, 0.0)
    order = np.argsort(-off, axis=None, kind="stable")[:n]
    pairs = [np.unravel_index(flat, off.shape) for flat in order]
    return [(names[i], names[j], float(off[i, j])) for i, j in pairs if off[i, j] > 0]


def confusion_figure(confusion: np.ndarray, names: Sequence[str], k: int, method: str, n: int = 12) -> Figure:
    """Return a heatmap of the top-K confusion matrix restricted to the labels of the top confusions.

    A full 100 x 100 matrix is unreadable; the labels involved in the ``n`` largest confusions show
    where a method goes wrong (e.g. Faces vs Faces_easy). The diagonal (share of right results) is kept.
    """
    pairs = top_confusions(confusion, names, n)
    involved = sorted({name for pair in pairs for name in pair[:2]}) or list(names)[: min(len(names), 12)]
    index = [list(names).index(name) for name in involved]
    shown = confusion[np.ix_(index, index)]
    side = max(4.0, 0.42 * len(involved) + 2.0)
    figure = _new_figure(side + 1.0, side)
    ax = figure.add_subplot()
    image = ax.imshow(shown * 100, cmap="cividis", vmin=0, vmax=100)
    ax.set_xticks(
        np.arange(len(involved)), involved, rotation=60, ha="right", rotation_mode="anchor", fontsize=8
    )
    ax.set_yticks(np.arange(len(involved)), involved, fontsize=8)
    ax.set_xlabel(f"label of a top-{k} result")
    ax.set_ylabel("label of the query")
    for (row, col), value in np.ndenumerate(shown * 100):
        if value >= 1:
            ax.text(
                col,
                row,
                f"{value:.0f}",
                ha="center",
                va="center",
                fontsize=6,
                color="black" if value > 60 else "white",
            )
    figure.colorbar(image, ax=ax, label=f"% of top-{k} results", shrink=0.8)
    ax.set_title(f"Top-{k} confusions: {method}", fontsize=10)
    return figure
