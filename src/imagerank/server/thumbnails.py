"""Thumbnails of indexed images, made on first request and cached as JPEG files.

A cached file is named after the image's id, content digest and size, so an image whose content changed
gets a new thumbnail and a stale one is never served. Files are written under a temporary name and renamed
into place, so concurrent requests for the same thumbnail never read a half-written file.
"""

from __future__ import annotations

import io
import logging
import os
import threading
from pathlib import Path

from imagerank.embedding.decoding import open_image
from imagerank.store.base import ImageRecord

logger = logging.getLogger(__name__)

JPEG_QUALITY = 85


class ThumbnailCache:
    """JPEG thumbnails no larger than `size` x `size`, cached in `directory` when it is writable."""

    def __init__(self, directory: Path, size: int) -> None:
        self.directory = directory
        self.size = size

    def thumbnail(self, record: ImageRecord, source: Path) -> bytes:
        """The thumbnail's JPEG bytes. Raises BadImageError when `source` cannot be decoded any more."""
        cached = self.directory / f"{record.id}-{record.digest[:16]}-{self.size}.jpg"
        try:
            return cached.read_bytes()
        except FileNotFoundError:
            pass
        data = self._render(source)
        self._store(cached, data)
        return data

    def _render(self, source: Path) -> bytes:
        image = open_image(source, draft_size=self.size)
        image.thumbnail((self.size, self.size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
        return buffer.getvalue()

    def _store(self, target: Path, data: bytes) -> None:
        """Write atomically; a read-only index directory only costs the cache, never the response."""
        partial = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            partial.write_bytes(data)
            partial.replace(target)
        except OSError as error:
            logger.warning("cannot cache thumbnail %s: %s", target, error)
            partial.unlink(missing_ok=True)
