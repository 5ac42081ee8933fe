"""Folders of bad, unusual and good image files for tests, generated here (nothing is downloaded).

Import it from any test (pytest puts ``tests/`` on ``sys.path``)::

    from corpus import write_bad_corpus
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)

EXIF_ROTATED_STORED_SIZE = (64, 32)
"""exif_rotated.jpg as stored: 64 wide, 32 high, a red 16x16 block top-left, the rest green.
Its EXIF orientation is 6 (turn 90 degrees clockwise), so upright it is 32x64 with the red block
top-right."""

GREY_16BIT = 0x8080
"""Every sample of grey_16bit.png: mid-grey, 128 once scaled to 8 bits (255 if clipped)."""

BOMB_SIZE = (50_000, 50_000)

RUNNING_AS_ROOT = os.geteuid() == 0
"""Root reads files whatever their permissions, so there is no unreadable file to test then."""


def write_bad_corpus(directory: Path) -> dict[str, str | None]:
    """Write the corpus into ``directory`` and return what decoding each file must give.

    Returns:
        Relative file name (with "/") -> a keyword of the expected ``BadImageError`` reason, or
        None for a file that must decode fine. All names have image extensions, so scanning finds
        every one of them; "dangling.jpg" and "loop.jpg" are symlinks that scanning reports as
        problems. "unreadable.jpg" (mode 000) is only written when not running as root. The
        folder also holds "sub folder/back to root", a symlink to the corpus folder itself, which
        scanning must not follow forever; it is not in the mapping.
    """
    directory.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str | None] = {}

    def put(name: str, content: bytes, reason: str | None) -> None:
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        expected[name] = reason

    put("truncated.jpg", _first_half(encode(_noise(128, 128), "JPEG", quality=90)), "truncated")
    put("truncated.png", _first_half(encode(_noise(64, 64), "PNG")), "truncated")
    put("empty.jpg", b"", "empty file")
    put("notes.jpg", b"Shopping list: eggs, milk.\nNot a photo at all.\n", "not an image")
    put("bomb.png", crafted_png(*BOMB_SIZE), "decompression bomb")
    put("one_pixel.png", encode(Image.new("RGB", (1, 1), RED), "PNG"), None)
    put("grey_16bit.png", _grey_16bit_png(), None)
    put("cmyk_red.jpg", encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"), None)
    put("palette_transparent.png", _palette_png_left_half_transparent(), None)
    put("animated.gif", _animated_gif(), None)
    put("exif_rotated.jpg", _exif_rotated_jpeg(), None)
    put("sub folder/café photo ü.jpg", encode(Image.new("RGB", (40, 30), BLUE), "JPEG"), None)
    put("sub folder/IMG_0001.JPG", encode(Image.new("RGB", (30, 40), GREEN), "JPEG"), None)
    if not RUNNING_AS_ROOT:
        put("unreadable.jpg", encode(Image.new("RGB", (8, 8), RED), "JPEG"), "permission denied")
        (directory / "unreadable.jpg").chmod(0)

    (directory / "dangling.jpg").symlink_to("no such file.jpg")
    expected["dangling.jpg"] = "dangling symlink"
    (directory / "loop.jpg").symlink_to("loop.jpg")
    expected["loop.jpg"] = "symlink loop"
    (directory / "sub folder" / "back to root").symlink_to("..", target_is_directory=True)
    return expected


def write_labelled_images(directory: Path, labels: Sequence[str], per_label: int) -> dict[str, str]:
    """Write ``per_label`` small JPEGs into one subfolder per label.

    Each label has its own background colour; images of a label differ by a small white square.

    Returns:
        Relative file name (with "/") -> label.
    """
    written: dict[str, str] = {}
    for index, label in enumerate(labels):
        hue = int(255 * index / max(1, len(labels)))
        colour = Image.new("HSV", (1, 1), (hue, 200, 200)).convert("RGB").getpixel((0, 0))
        (directory / label).mkdir(parents=True, exist_ok=True)
        for number in range(per_label):
            image = Image.new("RGB", (64, 48), colour)
            image.paste(WHITE, (4 * number % 48, 8, 4 * number % 48 + 12, 20))
            name = f"{label}/{label}_{number:03d}.jpg"
            image.save(directory / name, "JPEG", quality=90)
            written[name] = label
    return written


def crafted_png(width: int, height: int) -> bytes:
    """A valid, tiny PNG whose header declares ``width`` x ``height`` 8-bit grey pixels.

    Its pixel data is only the first row, so decoding it fully fails: a decoder that checks the
    size from the header rejects it as too large, one that decodes first reports truncation.
    """
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj()
    # A filter byte and one black row, in a zlib stream left open as if the file were cut short.
    first_row = compressor.compress(b"\x00" * (width + 1)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", first_row)
        + _png_chunk(b"IEND", b"")
    )


def encode(image: Image.Image, image_format: str, **options: object) -> bytes:
    """The bytes of ``image`` saved in ``image_format``."""
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _noise(width: int, height: int) -> Image.Image:
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _first_half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _grey_16bit_png() -> bytes:
    image = Image.fromarray(np.full((16, 24), GREY_16BIT, dtype=np.uint16))
    assert image.mode == "I;16", image.mode  # so the PNG is written with 16 bits per sample
    return encode(image, "PNG")


def _palette_png_left_half_transparent() -> bytes:
    """32x16 palette PNG: the left half is palette entry 0 (black, fully transparent), the right
    half entry 1 (red, opaque)."""
    image = Image.new("P", (32, 16), 0)
    image.putpalette([0, 0, 0, *RED])
    image.paste(1, (16, 0, 32, 16))
    return encode(image, "PNG", transparency=0)


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 20), colour) for colour in (RED, BLUE)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _exif_rotated_jpeg() -> bytes:
    image = Image.new("RGB", EXIF_ROTATED_STORED_SIZE, GREEN)
    image.paste(RED, (0, 0, 16, 16))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned, display turned 90 degrees clockwise
    return encode(image, "JPEG", quality=95, exif=exif)
