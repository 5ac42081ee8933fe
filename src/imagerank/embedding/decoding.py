"""Files -> images: find image files in a folder and decode them into RGB Pillow images.

Every failure is a :class:`~imagerank.errors.BadImageError` naming the file and a short reason, so
callers can report a bad file and carry on with the rest.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import stat
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

from imagerank.errors import BadImageError

# HEIC/HEIF (phones' default format) through pillow-heif; AVIF is built into Pillow. Files are decoded in
# parallel by the embedding pipeline, so each one gets a single libheif thread.
pillow_heif.register_heif_opener(decode_threads=1)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
)

MAX_IMAGE_PIXELS: int = 89_478_485
"""Pillow's default limit: about 0.25 GiB of pixels, 3 bytes each."""

UPLOAD_NAME = "<upload>"
"""The name errors use for images given as bytes or as a stream without a file name."""

# Modes holding more than 8 bits per sample; Pillow's convert() clips these to 0..255 (mostly white).
_HIGH_BIT_DEPTH_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_TRANSPARENT_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})

# Besides OSError, what Pillow raises on damaged data (its plugins are not consistent about it).
_CORRUPT_DATA_ERRORS = (ValueError, SyntaxError, EOFError, IndexError, struct.error)


@dataclass(frozen=True)
class ScanResult:
    """Image files found under a folder, and the candidates that cannot be files at all."""

    files: list[Path]
    problems: list[BadImageError]


def scan_image_files(
    root: Path | str, extensions: Iterable[str] = IMAGE_EXTENSIONS, skip_folders: Iterable[Path | str] = ()
) -> ScanResult:
    """Find image files under ``root``, recursively, sorted by their path relative to ``root``.

    Symlinked folders are followed, but a folder already visited (by its real path) is not entered
    again, so symlink loops end. Hidden files and folders (name starting with ".") are skipped.
    Dangling symlinks, symlink loops and unreadable folders are returned as problems, not raised.

    Args:
        root: The folder to scan.
        extensions: File name suffixes to keep, with or without the dot, in any case.
        skip_folders: Folders not to enter wherever they appear under ``root`` (compared by real path),
            such as an index directory kept inside the folder it indexes.

    Raises:
        BadImageError: ``root`` does not exist or is not a folder.
    """
    root = Path(root).absolute()
    if not root.is_dir():
        raise BadImageError(root, "no such folder" if not root.exists() else "not a directory")
    wanted = _normalized_extensions(extensions)
    files: list[Path] = []
    problems: list[BadImageError] = []
    visited: set[str] = {os.path.realpath(folder) for folder in skip_folders}

    def report_unreadable_folder(error: OSError) -> None:
        problems.append(BadImageError(error.filename, _os_error_reason(error)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=report_unreadable_folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in visited:
            dirnames.clear()
            continue
        visited.add(real)
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        for name in filenames:
            if name.startswith(".") or Path(name).suffix.lower() not in wanted:
                continue
            path = Path(dirpath, name)
            problem = _file_problem(path)
            if problem is None:
                files.append(path)
            else:
                problems.append(BadImageError(path, problem))
    files.sort(key=lambda path: path.relative_to(root).parts)
    problems.sort(key=lambda error: str(error.path))
    return ScanResult(files=files, problems=problems)


def open_image(
    source: str | Path | bytes | BinaryIO,
    *,
    draft_size: int | None = None,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Image.Image:
    """Decode an image file fully into an upright RGB image.

    The EXIF orientation is applied; animations give their first frame; transparent pixels become
    white; 16-bit grayscale is scaled (not clipped) to 8 bits; CMYK is converted to RGB.

    Args:
        source: A path, the file's bytes, or a binary stream (read from its start).
        draft_size: For JPEGs, decode at the smallest DCT scale (1/2, 1/4, 1/8) that keeps both
            sides >= ``draft_size``; for HEIC/HEIF, decode the smallest embedded thumbnail (phones
            write one) with both sides >= ``draft_size``, if any. Much faster for photos that get
            resized afterwards anyway. Other formats decode at full size.
        max_pixels: Images whose header declares more pixels are rejected before any pixel is
            decoded (a decompression bomb guard). Pillow's own guard, twice
            ``PIL.Image.MAX_IMAGE_PIXELS``, still applies on top of this one.

    Raises:
        BadImageError: The file is missing, unreadable, empty, not an image, too large, or its
            data is truncated or corrupt. Truncated files are never returned half-decoded as
            long as Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` keeps its default (False);
            imagerank never changes it.
    """
    if draft_size is not None and draft_size < 1:
        raise ValueError(f"draft_size must be a positive number of pixels, got {draft_size}")
    name = _source_name(source)
    try:
        with _seekable_stream(source) as stream:
            if _is_empty(stream):
                raise BadImageError(name, "empty file")
            return _decode(stream, name, draft_size, max_pixels)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise BadImageError(name, f"decompression bomb: {_pillow_bomb_detail(error)}") from error
    except UnidentifiedImageError as error:
        raise BadImageError(name, "not an image (unrecognized format)") from error
    except OSError as error:
        if error.errno is None:  # raised by Pillow's decoders, not by the operating system
            raise BadImageError(name, "truncated or corrupt image data") from error
        raise BadImageError(name, _os_error_reason(error)) from error
    except _CORRUPT_DATA_ERRORS as error:
        raise BadImageError(name, "truncated or corrupt image data") from error


def file_digest(path: Path | str) -> str:
    """Return the hex BLAKE2b (16-byte) digest of a file's content, read in chunks."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def _normalized_extensions(extensions: Iterable[str]) -> frozenset[str]:
    if isinstance(extensions, str):  # a lone "jpg" would otherwise be read as {"j", "p", "g"}
        extensions = [extensions]
    return frozenset("." + ext.lower().lstrip(".") for ext in extensions)


def _file_problem(path: Path) -> str | None:
    """Return why a scanned candidate cannot be read as a file, or None when it can."""
    try:
        mode = path.stat().st_mode
    except OSError as error:
        return _os_error_reason(error)
    # A FIFO named like an image would block every reader forever.
    return None if stat.S_ISREG(mode) else "not a regular file"


def _os_error_reason(error: OSError) -> str:
    path = Path(error.filename) if error.filename else None
    if error.errno == errno.ELOOP:
        return "symlink loop"
    if error.errno == errno.ENOENT:
        return "dangling symlink" if path is not None and path.is_symlink() else "file not found"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if error.errno == errno.EISDIR:
        return "is a directory"
    return error.strerror or str(error)


def _source_name(source: str | Path | bytes | BinaryIO) -> str:
    if isinstance(source, str | Path):
        return str(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else UPLOAD_NAME


@contextlib.contextmanager
def _seekable_stream(source: str | Path | bytes | BinaryIO) -> Iterator[BinaryIO]:
    """Yield a seekable binary stream; only a file opened here is closed afterwards."""
    if isinstance(source, str | Path):
        with open(source, "rb") as file:
            yield file
    elif isinstance(source, bytes | bytearray | memoryview):
        yield io.BytesIO(source)
    elif source.seekable():
        source.seek(0)
        yield source
    else:
        yield io.BytesIO(source.read())


def _is_empty(stream: BinaryIO) -> bool:
    empty = stream.seek(0, io.SEEK_END) == 0
    stream.seek(0)
    return empty


def _decode(stream: BinaryIO, name: str, draft_size: int | None, max_pixels: int) -> Image.Image:
    image = Image.open(stream)  # reads the header only
    width, height = image.size
    if width * height > max_pixels:
        raise BadImageError(
            name,
            f"decompression bomb: {width}x{height} pixels exceeds the limit of {max_pixels:,}",
        )
    if draft_size is not None:
        # JPEG and HEIF implement draft(); for other formats it is a no-op. A square box keeps
        # both sides >= draft_size whatever the EXIF orientation.
        image.draft("RGB", (draft_size, draft_size))
    image.load()  # the first frame of an animation
    ImageOps.exif_transpose(image, in_place=True)
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        return _scaled_to_8_bits(image).convert("RGB")
    if image.mode in _TRANSPARENT_MODES or "transparency" in image.info:
        return _on_white(image.convert("RGBA"))
    return image.convert("RGB")


def _scaled_to_8_bits(image: Image.Image) -> Image.Image:
    """Keep the high byte of 16-bit samples, so mid-grey stays mid-grey instead of white."""
    samples = np.clip(np.asarray(image), 0, 65535).astype(np.uint16)
    return Image.fromarray((samples >> 8).astype(np.uint8))


def _on_white(image: Image.Image) -> Image.Image:
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    background.alpha_composite(image)
    return background.convert("RGB")


def _pillow_bomb_detail(error: Exception) -> str:
    """Pillow's own message, without its closing "could be decompression bomb DOS attack"."""
    return str(error).split(", could be")[0]
