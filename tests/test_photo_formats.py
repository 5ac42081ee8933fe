"""Phone photo formats: HEIC/HEIF (through pillow-heif) and AVIF are found, decoded, indexed and searched."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagerank.embedding.decoding import open_image, scan_image_files
from imagerank.embedding.embedder import Embedder
from imagerank.errors import BadImageError
from imagerank.index.core import Index

# Sample photos written in phone formats, by file name under the folder made below.
CONVERTED = {
    "dalmatian/phone.heic": "dalmatian",
    "laptop/phone.avif": "laptop",
    "strawberry/IMG_0001.HEIF": "strawberry",
}


def _photo(sample_dir: Path, label: str) -> Path:
    return sorted((sample_dir / label).glob("*.jpg"))[0]


def _encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    stream = io.BytesIO()
    image.save(stream, format=image_format, **options)
    return stream.getvalue()


@pytest.fixture(scope="module")
def phone_folder(tmp_path_factory: pytest.TempPathFactory, sample_dir: Path) -> Path:
    """Three sample photos as HEIC/HEIF/AVIF, two as JPEG, and a HEIC cut in half."""
    folder = tmp_path_factory.mktemp("phone")
    for name, label in CONVERTED.items():
        image = Image.open(_photo(sample_dir, label)).convert("RGB")
        (folder / name).parent.mkdir(exist_ok=True)
        image_format = "AVIF" if name.endswith(".avif") else "HEIF"
        (folder / name).write_bytes(_encoded(image, image_format, quality=90))
    for label in ("pizza", "panda"):
        (folder / label).mkdir()
        (folder / label / "photo.jpg").write_bytes(_photo(sample_dir, label).read_bytes())
    whole = _encoded(Image.open(_photo(sample_dir, "pizza")).convert("RGB"), "HEIF", quality=90)
    (folder / "truncated.heic").write_bytes(whole[: len(whole) // 2])
    return folder


def test_scanning_finds_heic_heif_and_avif(phone_folder: Path) -> None:
    found = [path.relative_to(phone_folder).as_posix() for path in scan_image_files(phone_folder).files]
    assert sorted(found) == sorted([*CONVERTED, "pizza/photo.jpg", "panda/photo.jpg", "truncated.heic"])


@pytest.mark.parametrize("name", list(CONVERTED))
def test_phone_formats_decode_to_the_photo(name: str, phone_folder: Path, sample_dir: Path) -> None:
    original = np.asarray(Image.open(_photo(sample_dir, CONVERTED[name])).convert("RGB"), np.float32)
    decoded = open_image(phone_folder / name)
    assert decoded.mode == "RGB" and decoded.size == (original.shape[1], original.shape[0])
    assert np.abs(np.asarray(decoded, np.float32) - original).mean() < 6  # lossy, but the same picture


def test_a_truncated_heic_is_a_bad_image(phone_folder: Path) -> None:
    with pytest.raises(BadImageError) as caught:
        open_image(phone_folder / "truncated.heic")
    assert caught.value.path == phone_folder / "truncated.heic"
    assert caught.value.reason == "truncated or corrupt image data"


def test_heic_exif_orientation_is_applied_once() -> None:
    stored = Image.new("RGB", (64, 32), (0, 255, 0))
    stored.paste((255, 0, 0), (0, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = 6  # turn 90 degrees clockwise
    upright = open_image(_encoded(stored, "HEIF", quality=95, exif=exif.tobytes()))
    assert upright.size == (32, 64)
    red, green, _ = upright.getpixel((28, 4))  # the red block is now top-right
    assert red > 200 and green < 60


def test_heic_draft_decodes_an_embedded_thumbnail_large_enough() -> None:
    """Phones store a small preview in HEIC files; decoding it instead of 12 MP is what draft mode is for."""
    photo = Image.effect_mandelbrot((1200, 900), (-2.0, -1.5, 1.0, 1.5), 100).convert("RGB")
    with_preview = _encoded(photo, "HEIF", quality=80, thumbnails=[320])
    assert open_image(with_preview).size == (1200, 900)
    assert open_image(with_preview, draft_size=224).size == (320, 240)
    assert open_image(with_preview, draft_size=256).size == (1200, 900)  # the preview would be too small


def test_phone_photos_are_indexed_and_found_by_search(
    tmp_path: Path, phone_folder: Path, sample_dir: Path, mobilenet: Embedder
) -> None:
    with Index.create(tmp_path / "index", embedder=mobilenet) as index:
        report = index.sync(phone_folder, batch_size=2)

        assert sorted(report.indexed) == sorted([*CONVERTED, "pizza/photo.jpg", "panda/photo.jpg"])
        assert [(error.path.name, error.reason) for error in report.skipped] == [
            ("truncated.heic", "truncated or corrupt image data")
        ]
        for name, label in CONVERTED.items():
            scores, ids = index.search(_photo(sample_dir, label), k=1)
            (record,) = index.records(ids[0])
            assert (record.path, record.label) == (name, label)
            assert scores[0, 0] > 0.95
