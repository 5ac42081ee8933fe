"""Errors raised by imagerank. The library raises these; the CLI turns them into clean messages."""

from __future__ import annotations

from pathlib import Path


class ImageRankError(Exception):
    """Base class for every error imagerank raises on purpose."""


class BadImageError(ImageRankError):
    """A file could not be used as an image. Carries the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{printable_path(path)}: {reason}")


def printable_path(path: str | Path) -> str:
    """Return ``path`` as text any terminal can print: bytes of a file name that are not UTF-8 (which Python
    keeps as lone surrogates) shown as ``\\xNN`` escapes."""
    return str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class WeightsNotFoundError(ImageRankError):
    """Pretrained weights for a backbone are neither installed, cached nor downloadable."""


class UnknownModelError(ImageRankError):
    """The backbone name is not in the registry."""


class ModelMismatchError(ImageRankError):
    """Vectors from one backbone were about to be mixed with an index built by another."""


class IndexNotFoundError(ImageRankError):
    """No index exists at the given directory."""


class UnknownLabelError(ImageRankError):
    """A search was restricted to a label no indexed image has."""


class InvalidLabelError(ImageRankError, ValueError):
    """A label to assign is empty, too long, or holds control characters."""


class UnknownImageError(ImageRankError):
    """Image ids that are not in the index (the message names them)."""
