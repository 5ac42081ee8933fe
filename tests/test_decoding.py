"""Tests for files -> images: scanning folders and decoding real, generated files."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from corpus import (
    BLUE,
    BOMB_SIZE,
    EXIF_ROTATED_STORED_SIZE,
    RED,
    RUNNING_AS_ROOT,
    WHITE,
    crafted_png,
    encode,
    write_bad_corpus,
    write_labelled_images,
)
from PIL import Image, ImageFile, features

from imagerank.embedding.decoding import (
    IMAGE_EXTENSIONS,
    MAX_IMAGE_PIXELS,
    UPLOAD_NAME,
    ScanResult,
    file_digest,
    open_image,
    scan_image_files,
)
from imagerank.errors import BadImageError, ImageRankError

CALTECH = Path(__file__).resolve().parents[2] / "shared/datasets/caltech101/101_ObjectCategories"

CORPUS_NAMES = (
    "truncated.jpg",
    "truncated.png",
    "empty.jpg",
    "notes.jpg",
    "bomb.png",
    "one_pixel.png",
    "grey_16bit.png",
    "cmyk_red.jpg",
    "palette_transparent.png",
    "animated.gif",
    "exif_rotated.jpg",
    "sub folder/café photo ü.jpg",
    "sub folder/IMG_0001.JPG",
    "unreadable.jpg",
    "dangling.jpg",
    "loop.jpg",
)
SYMLINK_PROBLEMS = {"dangling.jpg": "dangling symlink", "loop.jpg": "symlink loop"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str | None]]:
    directory = tmp_path_factory.mktemp("corpus")
    return directory, write_bad_corpus(directory)


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4000x3000 photo-sized JPEG (flat colours, so it encodes fast and stays small)."""
    image = Image.new("RGB", (4000, 3000), BLUE)
    image.paste(RED, (0, 0, 2000, 1500))
    path = tmp_path_factory.mktemp("big") / "big.jpg"
    image.save(path, "JPEG", quality=85)
    return path


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value[0], value[1], value[2]


def close_to(actual: tuple[int, int, int], expected: tuple[int, int, int], tolerance: int) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


# --- the corpus, file by file -------------------------------------------------------------------


def test_corpus_names_cover_every_written_file(corpus: tuple[Path, dict[str, str | None]]) -> None:
    _, expected = corpus
    assert set(expected) <= set(CORPUS_NAMES)
    assert ("unreadable.jpg" in expected) is not RUNNING_AS_ROOT


@pytest.mark.parametrize("name", CORPUS_NAMES)
def test_each_corpus_file_decodes_or_fails_as_expected(
    corpus: tuple[Path, dict[str, str | None]], name: str
) -> None:
    directory, expected = corpus
    if name not in expected:
        pytest.skip("running as root: every file is readable")
    reason = expected[name]
    if reason is None:
        image = open_image(directory / name)
        assert image.mode == "RGB"
        return
    with pytest.raises(BadImageError) as caught:
        open_image(directory / name)
    assert reason in caught.value.reason
    assert caught.value.path == directory / name
    assert str(directory / name) in str(caught.value)


def test_truncated_files_raise_instead_of_returning_grey(
    corpus: tuple[Path, dict[str, str | None]],
) -> None:
    directory, _ = corpus
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # imagerank must not turn it on
    with pytest.raises(BadImageError, match="truncated or corrupt image data"):
        open_image(directory / "truncated.jpg")


def test_exif_orientation_turns_the_image_upright(
    corpus: tuple[Path, dict[str, str | None]],
) -> None:
    directory, _ = corpus
    with Image.open(directory / "exif_rotated.jpg") as stored:
        assert stored.size == EXIF_ROTATED_STORED_SIZE
        assert close_to(pixel(stored.convert("RGB"), (8, 8)), RED, 40)

    upright = open_image(directory / "exif_rotated.jpg")

    width, height = EXIF_ROTATED_STORED_SIZE
    assert upright.size == (height, width)
    assert close_to(pixel(upright, (height - 8, 8)), RED, 40)  # top-left went top-right
    assert not close_to(pixel(upright, (8, 8)), RED, 40)


def test_16_bit_grey_is_scaled_not_clipped_to_white(
    corpus: tuple[Path, dict[str, str | None]],
) -> None:
    directory, _ = corpus
    with Image.open(directory / "grey_16bit.png") as raw:
        assert raw.mode.startswith("I")

    image = open_image(directory / "grey_16bit.png")

    assert np.asarray(image).min() == 128
    assert np.asarray(image).max() == 128


def test_cmyk_red_stays_red(corpus: tuple[Path, dict[str, str | None]]) -> None:
    directory, _ = corpus
    with Image.open(directory / "cmyk_red.jpg") as raw:
        assert raw.mode == "CMYK"

    assert close_to(pixel(open_image(directory / "cmyk_red.jpg"), (16, 16)), RED, 40)


def test_transparent_palette_pixels_become_white_not_black(
    corpus: tuple[Path, dict[str, str | None]],
) -> None:
    directory, _ = corpus
    image = open_image(directory / "palette_transparent.png")

    assert pixel(image, (4, 8)) == WHITE
    assert pixel(image, (24, 8)) == RED


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_channel_is_composited_onto_white(mode: str) -> None:
    image = Image.new("RGBA", (4, 2), (0, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    image.putpixel((1, 0), (0, 0, 0, 128))

    decoded = open_image(encode(image.convert(mode), "PNG"))

    assert pixel(decoded, (0, 0)) == WHITE
    assert close_to(pixel(decoded, (1, 0)), (127, 127, 127), 2)
    assert pixel(decoded, (3, 1)) == (0, 0, 0)


def test_animated_gif_gives_its_first_frame(corpus: tuple[Path, dict[str, str | None]]) -> None:
    directory, _ = corpus
    with Image.open(directory / "animated.gif") as raw:
        assert raw.n_frames == 2
        raw.seek(1)
        assert close_to(pixel(raw.convert("RGB"), (10, 10)), BLUE, 10)

    assert close_to(pixel(open_image(directory / "animated.gif"), (10, 10)), RED, 10)


@pytest.mark.parametrize("image_format", ["PNG", "WEBP"])
def test_animated_png_and_webp_give_their_first_frame(image_format: str) -> None:
    if image_format == "WEBP" and not features.check("webp"):
        pytest.skip("Pillow built without WebP")
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE)]
    data = encode(frames[0], image_format, save_all=True, append_images=frames[1:], lossless=True)
    with Image.open(io.BytesIO(data)) as raw:
        assert raw.n_frames == 2

    assert close_to(pixel(open_image(data), (8, 8)), RED, 10)


def test_one_pixel_image_is_valid(corpus: tuple[Path, dict[str, str | None]]) -> None:
    directory, _ = corpus
    image = open_image(directory / "one_pixel.png")
    assert image.size == (1, 1)
    assert pixel(image, (0, 0)) == RED


@pytest.mark.parametrize(
    ("mode", "value", "expected"), [("L", 77, (77, 77, 77)), ("1", 1, WHITE), ("1", 0, (0, 0, 0))]
)
def test_grayscale_and_bilevel_become_rgb(mode: str, value: int, expected: tuple[int, int, int]) -> None:
    image = open_image(encode(Image.new(mode, (3, 3), value), "PNG"))
    assert image.mode == "RGB"
    assert pixel(image, (1, 1)) == expected


# --- decompression bombs ----------------------------------------------------------------------


def test_bomb_header_is_valid_and_rejected_for_its_size(
    corpus: tuple[Path, dict[str, str | None]], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory, _ = corpus
    bomb = directory / "bomb.png"
    assert bomb.stat().st_size < 1024
    with pytest.raises(BadImageError, match="decompression bomb"):
        open_image(bomb)

    # Without Pillow's global guard the header parses fine, and open_image's own per-call guard
    # still rejects it; decoding first would have reported truncated data instead.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with Image.open(bomb) as raw:
        assert raw.size == BOMB_SIZE
    with pytest.raises(BadImageError) as caught:
        open_image(bomb)
    assert caught.value.reason == (
        f"decompression bomb: 50000x50000 pixels exceeds the limit of {MAX_IMAGE_PIXELS:,}"
    )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_size_is_checked_before_pixels_are_decoded() -> None:
    just_over = crafted_png(10_000, 10_000)  # 1e8 pixels: only a warning for Pillow
    with pytest.raises(BadImageError, match="10000x10000 pixels exceeds the limit"):
        open_image(just_over)
    with pytest.raises(BadImageError, match="truncated"):
        open_image(crafted_png(100, 100))  # same file shape, small: decoding is what fails


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_pillow_bomb_warning_raised_as_error_becomes_bad_image_error() -> None:
    with pytest.raises(BadImageError, match="decompression bomb"):
        open_image(crafted_png(10_000, 10_000), max_pixels=10**12)


def test_max_pixels_is_per_call() -> None:
    data = encode(Image.new("RGB", (20, 20), RED), "PNG")
    with pytest.raises(BadImageError, match="20x20 pixels exceeds the limit of 399"):
        open_image(data, max_pixels=399)
    assert open_image(data, max_pixels=400).size == (20, 20)
    assert open_image(data).size == (20, 20)


# --- JPEG draft mode --------------------------------------------------------------------------


@pytest.mark.parametrize(("draft_size", "expected"), [(224, (500, 375)), (1500, (2000, 1500))])
def test_draft_decodes_big_jpeg_smaller_but_not_below_draft_size(
    big_jpeg: Path, draft_size: int, expected: tuple[int, int]
) -> None:
    image = open_image(big_jpeg, draft_size=draft_size)

    assert image.size == expected
    assert min(image.size) >= draft_size
    assert close_to(pixel(image, (10, 10)), RED, 30)  # content is scaled, not cropped
    assert close_to(pixel(image, (image.width - 10, image.height - 10)), BLUE, 30)


def test_without_draft_or_with_a_bigger_draft_size_the_jpeg_is_full_size(big_jpeg: Path) -> None:
    assert open_image(big_jpeg).size == (4000, 3000)
    assert open_image(big_jpeg, draft_size=3001).size == (4000, 3000)


def test_draft_keeps_exif_orientation_and_shorter_side(
    corpus: tuple[Path, dict[str, str | None]],
) -> None:
    directory, _ = corpus
    image = open_image(directory / "exif_rotated.jpg", draft_size=16)

    assert image.size == (16, 32)  # stored 64x32, decoded at 1/2, turned upright
    assert close_to(pixel(image, (12, 4)), RED, 60)


def test_draft_does_not_shrink_other_formats() -> None:
    data = encode(Image.new("RGB", (400, 300), RED), "PNG")
    assert open_image(data, draft_size=50).size == (400, 300)


def test_draft_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="draft_size"):
        open_image(encode(Image.new("RGB", (8, 8)), "JPEG"), draft_size=0)


# --- sources and file-system failures ---------------------------------------------------------


def test_bytes_and_streams_decode_and_name_the_upload_in_errors() -> None:
    data = encode(Image.new("RGB", (5, 4), RED), "JPEG")
    assert open_image(data).size == (5, 4)
    stream = io.BytesIO(data)
    stream.read(3)  # a stream is read from its start whatever its position
    assert open_image(stream).size == (5, 4)

    for bad, reason in [(b"", "empty file"), (b"hello", "not an image"), (data[:100], "trunc")]:
        with pytest.raises(BadImageError) as caught:
            open_image(bad)
        assert reason in caught.value.reason
        assert str(caught.value.path) == UPLOAD_NAME


def test_a_file_object_is_named_by_its_path(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not a picture")
    with open(path, "rb") as file, pytest.raises(BadImageError) as caught:
        open_image(file)
    assert caught.value.path == path


def test_missing_file_and_directory_are_bad_images(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="file not found"):
        open_image(tmp_path / "missing.jpg")
    with pytest.raises(BadImageError, match="is a directory"):
        open_image(tmp_path)


@pytest.mark.skipif(RUNNING_AS_ROOT, reason="root reads files whatever their permissions")
def test_unreadable_file_is_permission_denied(corpus: tuple[Path, dict[str, str | None]]) -> None:
    directory, _ = corpus
    with pytest.raises(BadImageError, match="permission denied"):
        open_image(directory / "unreadable.jpg")


def test_bad_image_error_is_an_imagerank_error() -> None:
    with pytest.raises(ImageRankError):
        open_image(b"")


# --- scanning folders -------------------------------------------------------------------------


def relative(result: ScanResult, root: Path) -> list[str]:
    return [path.relative_to(root).as_posix() for path in result.files]


def touch(root: Path, *names: str) -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_scan_finds_corpus_files_and_reports_symlink_problems(
    corpus: tuple[Path, dict[str, str | None]],
) -> None:
    directory, expected = corpus
    result = scan_image_files(directory)

    files = relative(result, directory)
    assert sorted(files) == sorted(set(expected) - set(SYMLINK_PROBLEMS))  # no duplicates
    assert "sub folder/café photo ü.jpg" in files  # unicode and spaces
    assert {
        error.path.relative_to(directory).as_posix(): error.reason for error in result.problems
    } == SYMLINK_PROBLEMS
    assert all(path.is_absolute() for path in result.files)


def test_scan_sorts_by_relative_path_parts(tmp_path: Path) -> None:
    touch(tmp_path, "b/1.jpg", "a/2.jpg", "a b/3.jpg", "a/1.jpg", "z.jpg", "A.jpg")

    assert relative(scan_image_files(tmp_path), tmp_path) == [
        "A.jpg",
        "a/1.jpg",
        "a/2.jpg",
        "a b/3.jpg",
        "b/1.jpg",
        "z.jpg",
    ]


def test_scan_filters_extensions_in_any_case_and_skips_hidden(tmp_path: Path) -> None:
    touch(tmp_path, "a.jpg", "B.JPG", "c.png", "d.txt", "noext", ".hidden.jpg", ".cache/x.jpg")

    assert relative(scan_image_files(tmp_path), tmp_path) == ["B.JPG", "a.jpg", "c.png"]
    assert relative(scan_image_files(tmp_path, ["JPG"]), tmp_path) == ["B.JPG", "a.jpg"]
    assert relative(scan_image_files(tmp_path, {".PNG"}), tmp_path) == ["c.png"]
    assert relative(scan_image_files(tmp_path, "txt"), tmp_path) == ["d.txt"]


def test_scan_skips_the_folders_it_is_told_to_even_through_a_symlink(tmp_path: Path) -> None:
    touch(tmp_path, "a.jpg", "my.index/thumbnails/1.jpg", "my.index/uploads/cat/2.jpg", "b/c.jpg")
    (tmp_path / "b" / "index again").symlink_to(tmp_path / "my.index", target_is_directory=True)

    assert relative(scan_image_files(tmp_path, skip_folders=[tmp_path / "my.index"]), tmp_path) == [
        "a.jpg",
        "b/c.jpg",
    ]


def test_default_extensions() -> None:
    expected = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
    assert expected == IMAGE_EXTENSIONS


def test_scan_follows_symlinked_folders_once(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    touch(outside, "x.jpg")
    root = tmp_path / "root"
    touch(root, "own.jpg")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "linked again").symlink_to(outside, target_is_directory=True)
    (outside / "up").symlink_to(root, target_is_directory=True)  # a loop through both

    result = scan_image_files(root)

    assert relative(result, root) == ["linked/x.jpg", "own.jpg"]
    assert result.problems == []


def test_scan_rejects_a_missing_root_or_a_file_root(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match="no such folder"):
        scan_image_files(tmp_path / "missing")
    touch(tmp_path, "file.jpg")
    with pytest.raises(BadImageError, match="not a directory"):
        scan_image_files(tmp_path / "file.jpg")


def test_scan_reports_a_fifo_instead_of_listing_it(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.jpg")
    result = scan_image_files(tmp_path)
    assert result.files == []
    assert [error.reason for error in result.problems] == ["not a regular file"]


def test_labelled_images_scan_and_decode(tmp_path: Path) -> None:
    written = write_labelled_images(tmp_path, ["cat", "dog"], per_label=3)
    result = scan_image_files(tmp_path)
    assert relative(result, tmp_path) == sorted(written)
    assert {open_image(path).size for path in result.files} == {(64, 48)}


# --- digests ----------------------------------------------------------------------------------


def test_digest_follows_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"same bytes")
    (tmp_path / "b.jpg").write_bytes(b"same bytes")
    (tmp_path / "c.jpg").write_bytes(b"same bytez")

    digest = file_digest(tmp_path / "a.jpg")

    assert digest == hashlib.blake2b(b"same bytes", digest_size=16).hexdigest()
    assert len(digest) == 32
    assert file_digest(str(tmp_path / "b.jpg")) == digest
    assert file_digest(tmp_path / "c.jpg") != digest


def test_digest_of_a_multi_chunk_file(tmp_path: Path) -> None:
    content = np.random.default_rng(1).integers(0, 256, 3 * 2**20, dtype=np.uint8).tobytes()
    (tmp_path / "big.bin").write_bytes(content)
    expected = hashlib.blake2b(content, digest_size=16).hexdigest()
    assert file_digest(tmp_path / "big.bin") == expected


# --- real data --------------------------------------------------------------------------------


def test_caltech101_scan_and_decode_a_few() -> None:
    if not CALTECH.is_dir():
        pytest.skip(f"Caltech-101 not found at {CALTECH}")

    result = scan_image_files(CALTECH)

    assert len(result.files) == 9_144  # BACKGROUND_Google/tmp has no extension
    assert result.problems == []
    assert len({path.parent.name for path in result.files}) == 102
    for path in result.files[::1500]:
        with Image.open(path) as raw:
            stored_size = raw.size
        image = open_image(path, draft_size=224)
        assert image.mode == "RGB"
        assert min(image.size) >= min(224, *stored_size)
