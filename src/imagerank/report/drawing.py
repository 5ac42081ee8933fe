"""What every figure shares: its colors, a blank figure (matplotlib imported only then), and thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps

from imagerank.embedding.decoding import open_image
from imagerank.errors import BadImageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure


WRONG_COLOR = "#d62728"
WRONG_MARK = "\u2717 "
QUERY_COLOR = "#222222"
LETTERBOX_COLOR = (242, 242, 242)
PROJECTIONS = ("pca", "tsne")
_LEGEND_MAX_LABELS = 12


def palette(n: int) -> list[str]:
    """Return ``n`` colors from the colorblind-safe Petroff 10-color cycle, repeating past ten."""
    from matplotlib import style

    colors = style.library["petroff10"]["axes.prop_cycle"].by_key()["color"]
    return [colors[i % len(colors)] for i in range(n)]


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def thumbnail(path: str | Path, size: int) -> Image.Image:
    """Return the image at ``path`` scaled to fit a ``size`` square, letterboxed (aspect kept).

    An unreadable file gives a grey square rather than an error, so one bad file does not lose a figure.
    """
    try:
        image = open_image(path, draft_size=size)
    except BadImageError:
        return Image.new("RGB", (size, size), (160, 160, 160))
    return ImageOps.pad(image, (size, size), method=Image.Resampling.BICUBIC, color=LETTERBOX_COLOR)


# --- dataset overview ----------------------------------------------------------------------------------


FIGURE_DPI = 100


def save_figure(
    figure: Figure,
    path: str | Path,
    width_px: int | None = None,
    height_px: int | None = None,
    colors: int | None = None,
) -> Path:
    """Write ``figure`` to ``path`` (format from the suffix) and return the path.

    ``width_px`` and/or ``height_px`` set the size of a PNG in pixels by changing the resolution, so the
    figure keeps its look (text scales with it); giving both also changes the height in inches. ``colors``
    reduces a PNG to a palette of that many colors: 3-4 times smaller files of photo grids, for docs.
    """
    path = Path(path)
    width, height = figure.get_size_inches()
    dpi = width_px / width if width_px else height_px / height if height_px else FIGURE_DPI
    if width_px and height_px:
        figure.set_size_inches(width, height_px / dpi)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi, facecolor="white")
    if colors and path.suffix.lower() == ".png":
        with Image.open(path) as image:
            reduced = image.convert("RGB").quantize(colors, method=Image.Quantize.MEDIANCUT)
        reduced.save(path, optimize=True)
    return path
