"""Figures: real properties of what is drawn (panels, frames, pixel sizes, aspect, legibility)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from imagerank.evaluation.evaluate import evaluate_split
from imagerank.evaluation.protocols import Protocol
from imagerank.ranking import CosineRanker, RandomRanker
from imagerank.report import plots
from imagerank.report.html import save_figure


def rendered(figure: Figure) -> np.ndarray:
    """Return the figure's pixels as an (H, W, 3) uint8 array, drawn at its own size and dpi."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def pixel_box(figure: Figure, ax) -> tuple[int, int, int, int]:
    """Return (left, top, right, bottom) pixel rows/columns of an axes in the rendered image."""
    box = ax.get_window_extent()
    height = figure.bbox.height
    return round(box.x0), round(height - box.y1), round(box.x1), round(height - box.y0)


def ring_share(pixels: np.ndarray, box: tuple[int, int, int, int], color: str, inset: int = 1) -> float:
    """Return the share of pixels on a 1-px ring just inside an axes' edge that have ``color``."""
    left, top, right, bottom = box
    ring = np.concatenate(
        [
            pixels[top + inset, left:right],
            pixels[bottom - inset - 1, left:right],
            pixels[top:bottom, left + inset],
            pixels[top:bottom, right - inset - 1],
        ]
    )
    target = np.array(to_rgb(color)) * 255
    return float((np.abs(ring.astype(int) - target).max(axis=1) <= 12).mean())


def overlapping_pairs(boxes: list) -> list[tuple[int, int]]:
    return [
        (i, j)
        for i in range(len(boxes))
        for j in range(i + 1, len(boxes))
        if boxes[i].width and boxes[j].width and boxes[i].overlaps(boxes[j])
    ]


@pytest.fixture(scope="module")
def query_rows(sample_dir: Path) -> list[plots.QueryResults]:
    """Two queries with 5 results each: some share the query's label, some do not."""
    dalmatians = sorted((sample_dir / "dalmatian").glob("*.jpg"))
    pandas = sorted((sample_dir / "panda").glob("*.jpg"))
    return [
        plots.QueryResults(
            query=dalmatians[0],
            query_label="dalmatian",
            paths=[dalmatians[1], pandas[0], dalmatians[2], pandas[1], dalmatians[3]],
            labels=["dalmatian", "panda", "dalmatian", "panda", "dalmatian"],
            scores=[0.9, 0.8, 0.7, 0.6, 0.5],
        ),
        plots.QueryResults(
            query=pandas[2],
            query_label="panda",
            paths=[pandas[3], pandas[4], dalmatians[4], pandas[5], pandas[6]],
            labels=["panda", "panda", "dalmatian", "panda", "panda"],
            scores=[0.95, 0.85, 0.75, 0.65, 0.55],
        ),
    ]


def test_a_grid_for_k_results_has_k_plus_one_panels_per_query(query_rows):
    figure = plots.retrieval_grid_figure(query_rows, title="cosine")
    names = [ax.get_label() for ax in figure.axes]
    assert names.count("query") == len(query_rows)
    assert sum(name.startswith("result ") for name in names) == 5 * len(query_rows)
    assert len(figure.axes) == len(query_rows) * (5 + 1)


def test_wrong_results_are_framed_in_red_and_right_ones_are_not(query_rows):
    figure = plots.retrieval_grid_figure(query_rows)
    pixels = rendered(figure)
    wrong = [ax for ax in figure.axes if ax.get_label().endswith("wrong")]
    right = [ax for ax in figure.axes if ax.get_label().endswith("correct")]
    assert len(wrong) == 3 and len(right) == 7
    for ax in wrong:
        assert ring_share(pixels, pixel_box(figure, ax), plots.WRONG_COLOR) > 0.95, ax.get_label()
        assert ax.get_title().startswith(plots.WRONG_MARK), "the frame is never the only cue"
    for ax in right:
        assert ring_share(pixels, pixel_box(figure, ax), plots.WRONG_COLOR) < 0.05, ax.get_label()


def test_comparison_shows_the_same_queries_under_each_method(query_rows):
    figure = plots.retrieval_comparison_figure({"cosine": query_rows, "lda": query_rows[::-1]})
    names = [ax.get_label() for ax in figure.axes]
    assert names.count("query") == 2 * len(query_rows)
    assert {text.get_text() for text in figure.texts} == {"cosine", "lda"}
    lefts = sorted({round(ax.get_position().x0, 3) for ax in figure.axes})
    assert len(lefts) == 2 * 6, "two blocks of query + 5 result columns"


def test_thumbnails_keep_the_aspect_ratio_and_are_letterboxed(tmp_path: Path):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (300, 100), (0, 0, 255)).save(wide)
    thumb = np.asarray(plots.thumbnail(wide, 90))
    assert thumb.shape == (90, 90, 3)
    blue_rows = np.flatnonzero((thumb[:, 45, 2] > 200) & (thumb[:, 45, 0] < 50))
    assert 29 <= len(blue_rows) <= 31, "a 3:1 image fills a third of the square's height"
    assert tuple(thumb[0, 45]) == plots.LETTERBOX_COLOR


def test_label_counts_stay_legible_with_120_labels():
    rng = np.random.default_rng(0)
    labels = np.repeat([f"category_with_a_long_name_{i:03d}" for i in range(120)], rng.integers(5, 80, 120))
    figure = plots.label_counts_figure(labels)
    rendered(figure)
    ax = figure.axes[0]
    ticks = [label.get_window_extent() for label in ax.get_yticklabels()]
    assert len(ticks) == 120
    assert overlapping_pairs(ticks) == []
    assert ax.get_title() and ax.get_xlabel()
    counts = [patch.get_width() for patch in ax.patches]
    assert counts == sorted(counts, reverse=True), "sorted, most frequent first"


def test_embedding_map_uses_a_legend_for_few_labels_and_centroid_names_for_many():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(200, 2))
    few = plots.embedding_map_figure(points, np.repeat(list("abcde"), 40), "few")
    assert few.axes[0].get_legend() is not None
    many_labels = np.repeat([f"label{i}" for i in range(40)], 5)
    many = plots.embedding_map_figure(points, many_labels, "many")
    assert many.axes[0].get_legend() is None
    assert {text.get_text() for text in many.axes[0].texts} == set(many_labels)


def test_projections_are_two_dimensional_and_reproducible():
    vectors = np.random.default_rng(1).normal(size=(60, 32)).astype(np.float32)
    for method in plots.PROJECTIONS:
        first, second = plots.project_2d(vectors, method, seed=3), plots.project_2d(vectors, method, seed=3)
        assert first.shape == (60, 2)
        np.testing.assert_allclose(first, second)
    with pytest.raises(ValueError, match="unknown projection"):
        plots.project_2d(vectors, "umap")


def test_curves_have_one_line_per_method_for_k_1_to_50():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(6).astype(str), 30)
    vectors = rng.normal(size=(len(labels), 16)) + 3 * np.eye(16)[labels.astype(int)]
    split = Protocol("small", n_test=20, n_queries=5).split(labels)
    result = evaluate_split(vectors, labels, split, {"random": RandomRanker(), "cosine": CosineRanker()})
    figure = plots.precision_recall_figure(result)
    precision_ax, recall_ax = figure.axes
    for ax in (precision_ax, recall_ax):
        assert [line.get_label() for line in ax.get_lines()] == ["random", "cosine"]
        np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), np.arange(1, 51))
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    cosine = precision_ax.get_lines()[1].get_ydata()
    assert cosine[0] > precision_ax.get_lines()[0].get_ydata()[0], "separable data: cosine beats random"


def test_confusion_shares_and_top_confusions():
    names = ["Faces", "Faces_easy", "car"]
    query_labels = np.array(["Faces", "Faces", "car"])
    retrieved = np.array([["Faces_easy", "Faces"], ["Faces_easy", "Faces_easy"], ["car", "car"]])
    confusion = plots.top_k_confusion(query_labels, retrieved, names)
    np.testing.assert_allclose(confusion.sum(axis=1), [1, 0, 1])
    assert confusion[0, 1] == pytest.approx(0.75)
    assert plots.top_confusions(confusion, names) == [("Faces", "Faces_easy", 0.75)]
    figure = plots.confusion_figure(confusion, names, k=2, method="cosine")
    assert [label.get_text() for label in figure.axes[0].get_yticklabels()] == ["Faces", "Faces_easy"]


def test_label_ap_shows_best_and_worst_labels():
    ap = {f"label{i:03d}": i / 100 for i in range(100)}
    figure = plots.label_ap_figure(ap, "lda", n=10)
    best, worst = figure.axes
    assert best.get_yticklabels()[0].get_text() == "label099"
    assert worst.get_yticklabels()[-1].get_text() == "label000"


@pytest.mark.parametrize(("width", "height", "expected"), [(640, None, (640, 320)), (500, 400, (500, 400))])
def test_saved_png_has_the_requested_pixel_size(tmp_path: Path, width, height, expected):
    figure = Figure(figsize=(8, 4))
    figure.add_subplot().plot([0, 1], [0, 1])
    path = save_figure(figure, tmp_path / "figure.png", width, height)
    with Image.open(path) as image:
        assert image.size == expected


def test_a_palette_png_is_smaller_and_keeps_its_size(tmp_path: Path, query_rows):
    full = save_figure(plots.retrieval_grid_figure(query_rows), tmp_path / "full.png")
    reduced = save_figure(plots.retrieval_grid_figure(query_rows), tmp_path / "reduced.png", colors=128)
    with Image.open(full) as original, Image.open(reduced) as small:
        assert small.mode == "P" and small.size == original.size
    assert reduced.stat().st_size < 0.6 * full.stat().st_size
