"""The report folder and the `report` / `plot` commands, run for real on the shipped sample.

The report is built once per module through the CLI functions (in-process, with Typer's runner) with the real
MobileNetV2; the sample has 8 images per label, so the seed protocol is shrunk to 6 searched, 2 queries.
"""

from __future__ import annotations

import shutil
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import pytest
import typer
from browser import CHROMIUM, CHROMIUM_ARGS
from conftest import copy_sample
from PIL import Image
from typer.testing import CliRunner

from imagerank.cli.plot import plot_app
from imagerank.cli.report import report_command
from imagerank.report import html as report

SMALL_PROTOCOL = ["--test-per-label", "6", "--queries-per-label", "2"]


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    """The commands wired as the main CLI wires them."""
    app = typer.Typer()
    app.command("report")(report_command)
    app.add_typer(plot_app, name="plot")
    return app


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory, app: typer.Typer, sample_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("report") / "report"
    result = CliRunner().invoke(
        app, ["report", str(sample_dir), "--out", str(out), *SMALL_PROTOCOL, "--quiet"]
    )
    assert result.exit_code == 0, result.output
    return out


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values["src"] or "")
        if tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")


def references(html_file: Path) -> _References:
    parser = _References()
    parser.feed(html_file.read_text(encoding="utf-8"))
    return parser


def test_every_section_has_its_figures_and_every_figure_decodes(report_dir: Path):
    pngs = {path.stem for path in (report_dir / "figures").glob("*.png")}
    expected = {"label_counts", "label_thumbnails", "image_sizes", "precision_recall", "results", "confusion"}
    assert expected <= pngs
    assert {"map_mobilenet-v2-embeddings", "map_mobilenet-v2-after-lda", "results_compared"} <= pngs
    assert {"label_ap_cosine", "label_ap_lda"} <= pngs
    for path in (report_dir / "figures").glob("*.png"):
        with Image.open(path) as image:
            image.load()
            assert min(image.size) >= 200, path.name
    svgs = list((report_dir / "figures").glob("*.svg"))
    assert svgs
    for path in svgs:
        assert ElementTree.parse(path).getroot().tag.endswith("svg")


def test_html_references_only_files_that_exist_inside_the_folder(report_dir: Path):
    found = references(report_dir / "index.html")
    assert len(found.images) == len(list((report_dir / "figures").glob("*.png")))
    for reference in found.images + [link for link in found.links if not link.startswith("#")]:
        target = (report_dir / reference).resolve()
        assert target.is_file(), reference
        assert target.is_relative_to(report_dir.resolve()), f"{reference} is outside the report folder"


def test_html_has_the_metric_table_with_intervals_and_the_top_confusions(report_dir: Path):
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    for method in ("random", "cosine", "lda"):
        assert f"<th>{method}</th>" in page
    assert "95% bootstrap intervals" in page and "<small>[" in page
    assert "Most frequent wrong labels" in page


def test_the_report_renders_in_headless_chromium_with_every_image_loaded(report_dir: Path, tmp_path: Path):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.is_file():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto((report_dir / "index.html").as_uri(), wait_until="load")
            widths = page.eval_on_selector_all("img", "images => images.map(image => image.naturalWidth)")
            screenshot = tmp_path / "report.png"
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    assert widths and all(width > 0 for width in widths), widths
    with Image.open(screenshot) as image:
        assert image.width == 1280 and image.height > 2000, "a full page with every section"


def test_plot_results_writes_the_requested_width(app: typer.Typer, sample_dir: Path, tmp_path: Path):
    out = tmp_path / "results.png"
    args = [
        "plot",
        "results",
        str(sample_dir),
        "--out",
        str(out),
        "-k",
        "4",
        "--queries",
        "3",
        "--width",
        "800",
    ]
    result = CliRunner().invoke(app, [*args, "--method", "cosine", *SMALL_PROTOCOL, "--quiet"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.width == 800


def test_plot_map_of_a_method_without_a_projection_is_a_clean_error(
    app: typer.Typer, sample_dir: Path, tmp_path: Path
):
    out = tmp_path / "map.png"
    args = [
        "plot",
        "map",
        str(sample_dir),
        "--out",
        str(out),
        "--after",
        "cosine",
        *SMALL_PROTOCOL,
        "--quiet",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "learns no projection" in result.output
    assert not out.exists()


def test_plot_counts_on_caltech_grows_with_its_102_labels(
    app: typer.Typer, caltech_dir: Path, tmp_path: Path
):
    out = tmp_path / "counts.png"
    result = CliRunner().invoke(app, ["plot", "counts", str(caltech_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    with Image.open(out) as image:
        assert image.height >= 102 * 14, "about 14 px per label keeps 7-pt names apart"


def test_bad_dataset_folder_is_a_clean_error(app: typer.Typer, tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(Path(__file__), empty / "not-an-image.py")
    result = CliRunner().invoke(app, ["report", str(empty), "--out", str(tmp_path / "out"), "--quiet"])
    assert result.exit_code == 1
    assert "no images in label subfolders" in result.output


def test_the_report_names_its_real_protocol_and_parameters(report_dir: Path):
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    named = "protocol per-label (6 images per label searched, 2 of them queries, the rest train; seed 2021)"
    assert named in page
    assert "protocol seed" not in page


def test_a_report_on_a_ragged_folder_skips_bad_files_and_is_written_whole_or_not_at_all(
    app: typer.Typer, sample_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    folder = copy_sample(sample_dir, tmp_path / "photos", labels=("pizza", "panda"), per_label=8)
    copy_sample(sample_dir, folder / "animals", labels=("llama",), per_label=8)
    data = (folder / "pizza" / "image_0001.jpg").read_bytes()
    (folder / "pizza" / "truncated.jpg").write_bytes(data[: len(data) // 2])
    out = tmp_path / "report"
    arguments = ["report", str(folder), "--out", str(out), "--quiet", "--methods", "random,cosine"]

    def crash(*args: object) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patched:  # the disk fills up after most figures were written
        patched.setattr(report, "_confusion_section", crash)
        failed = CliRunner().invoke(app, arguments)
    assert failed.exit_code != 0
    assert not out.exists() and [path.name for path in tmp_path.iterdir()] == ["photos"]

    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert f"skipped {folder.absolute() / 'pizza' / 'truncated.jpg'}: truncated" in result.output
    assert "protocol: per-label (7 images per label searched, 1 of them queries" in result.output
    page = (out / "index.html").read_text(encoding="utf-8")
    assert "1 files skipped" in page and "truncated.jpg" in page
    assert "24 images in 3 labels" in page
    written = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}

    with monkeypatch.context() as patched:  # a failed run leaves the earlier report as it was
        patched.setattr(report, "_confusion_section", crash)
        assert CliRunner().invoke(app, arguments).exit_code != 0
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == written
    assert sorted(path.name for path in tmp_path.iterdir()) == ["photos", "report"]
