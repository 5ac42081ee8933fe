"""Uploaded images: size limits, decoding, and saving new images into the indexed folder.

The client's file name never reaches the filesystem: a saved upload is named after its content digest and
its decoded format, inside the indexed root (or one label folder directly under it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
from pathlib import Path

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagerank.decoding import IMAGE_EXTENSIONS, open_image
from imagerank.errors import BadImageError
from imagerank.server.errors import InvalidRequestError, UnsupportedUploadError, UploadTooLargeError

# Pillow format name -> the file extension a saved upload gets (all in IMAGE_EXTENSIONS, so `imagerank index`
# keeps them on the next sync).
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tiff"}
_LABEL = re.compile(r"^\w[\w .-]{0,63}$")


async def read_upload(upload: UploadFile, limit: int) -> bytes:
    """The uploaded file's bytes. Raises UploadTooLargeError past `limit` bytes (without reading it all)."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise UploadTooLargeError(limit)
    return data


def decode_upload(data: bytes, filename: str | None) -> Image.Image:
    """The upright RGB image. Raises BadImageError (not an image, corrupt, decompression bomb)."""
    try:
        return open_image(data)
    except BadImageError as error:
        raise BadImageError(_display_name(filename), error.reason) from error


def saved_upload(data: bytes, root: Path, label: str | None) -> Path:
    """Write an already decoded upload into `root` (under `label`) and return its path.

    Same content, same name: uploading an image twice stores it once.
    """
    folder = root / checked_label(label) if label else root
    with Image.open(io.BytesIO(data)) as image:
        extension = _EXTENSIONS.get(image.format or "")
    if extension is None or extension not in IMAGE_EXTENSIONS:
        raise UnsupportedUploadError(f"cannot store this image format; use one of {', '.join(_EXTENSIONS)}")
    target = folder / f"upload-{hashlib.blake2b(data, digest_size=8).hexdigest()}{extension}"
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{target.name}.{os.getpid()}.{threading.get_ident()}.partial"
    partial.write_bytes(data)
    partial.replace(target)
    return target


def checked_label(label: str) -> str:
    """A label usable as one folder name: letters, digits, `_`, space, `.` and `-`; no path separators."""
    if not _LABEL.fullmatch(label):
        raise InvalidRequestError(
            f"label {label[:70]!r} is not a plain folder name (letters, digits, '_', ' ', '.', '-'; "
            f"at most 64 characters, starting with a letter or digit)"
        )
    return label


def _display_name(filename: str | None) -> str:
    return Path(filename).name[:200] if filename else "upload"


class BodySizeLimit:
    """ASGI middleware: 413 for request bodies over `limit` (+ `slack` for the multipart envelope) bytes.

    A declared Content-Length is refused before anything is read; a chunked body is counted as it
    arrives and fails as soon as it passes the limit, so no upload is ever buffered past it.
    """

    def __init__(self, app: ASGIApp, limit: int, slack: int = 64 * 1024) -> None:
        self.app = app
        self.limit = limit
        self.allowed = limit + slack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.allowed):
            await _send_413(send, self.limit)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.allowed:
                raise UploadTooLargeError(self.limit)
            return message

        await self.app(scope, counted_receive, send)


async def _send_413(send: Send, limit: int) -> None:
    body = json.dumps({"detail": str(UploadTooLargeError(limit))}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
