"""Uploaded images: size limits, decoding, and saving new images into the index's uploads folder.

A saved upload is named `<safe form of the client's name>-<content digest>.<decoded format>`, in the uploads
folder or one label folder directly under it; the client's name itself never reaches the filesystem. A file
is written under `.incoming/` and renamed into place, so a killed server leaves no partial file in view, and
`reconcile_uploads` (run at start-up) removes what a killed server left half done.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
import unicodedata
import uuid
from pathlib import Path, PureWindowsPath

from PIL import Image
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagerank.embedding.decoding import IMAGE_EXTENSIONS, open_image
from imagerank.errors import BadImageError
from imagerank.index.core import Index
from imagerank.index.files import UPLOADS_PREFIX
from imagerank.server.errors import InvalidRequestError, UnsupportedUploadError, UploadTooLargeError

# Pillow format name -> the file extension a saved upload gets (all in IMAGE_EXTENSIONS, so `imagerank index`
# keeps them on the next sync).
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tiff"}
_LABEL = re.compile(r"^\w[\w .-]{0,63}$")
_UNSAFE = re.compile(r"[^\w.-]+")
_SAVED_NAME = re.compile(r"-[0-9a-f]{16}\.[a-z]+$")  # how every saved upload's name ends
_MAX_STEM_BYTES = 120
INCOMING = ".incoming"
logger = logging.getLogger(__name__)


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


def saved_upload(data: bytes, folder: Path, label: str | None, filename: str | None) -> Path:
    """Write an already decoded upload into the uploads `folder` (under `label`) and return its path.

    Same name and content, same file: uploading an image twice stores it once.
    """
    target_folder = folder / checked_label(label) if label else folder
    with Image.open(io.BytesIO(data)) as image:
        extension = _EXTENSIONS.get(image.format or "")
    if extension is None or extension not in IMAGE_EXTENSIONS:
        raise UnsupportedUploadError(f"cannot store this image format; use one of {', '.join(_EXTENSIONS)}")
    digest = hashlib.blake2b(data, digest_size=8).hexdigest()
    target = target_folder / f"{safe_stem(filename)}-{digest}{extension}"
    incoming = folder / INCOMING
    incoming.mkdir(parents=True, exist_ok=True)
    target_folder.mkdir(parents=True, exist_ok=True)
    partial = incoming / f"{uuid.uuid4().hex}.partial"
    partial.write_bytes(data)
    partial.replace(target)
    return target


def safe_stem(filename: str | None) -> str:
    """The client's file name without folders or extension, as a name safe on any filesystem: letters,
    digits, '_', '.' and '-' (anything else becomes '_'), not hidden, at most 120 bytes; else "upload"."""
    stem = PureWindowsPath(filename or "").stem  # drops folders given with either separator
    stem = _UNSAFE.sub("_", unicodedata.normalize("NFKC", stem)).strip("._-")
    while len(stem.encode()) > _MAX_STEM_BYTES:
        stem = stem[:-1]
    return stem or "upload"


def reconcile_uploads(index: Index) -> tuple[int, int]:
    """Undo what a server killed in the middle of an upload left: partial files, saved files that were
    never indexed (their client got no answer, so the upload is absent), and records whose file is gone.

    Only files named as this module names uploads are ever deleted. Returns (files removed, records
    dropped). Run it before serving, with no other server uploading into the same folder.
    """
    folder = index.uploads_folder
    shutil.rmtree(folder / INCOMING, ignore_errors=True)
    if not folder.is_dir():
        return 0, 0
    indexed = {
        record.path.removeprefix(UPLOADS_PREFIX): record
        for record in index.store.all_records()
        if record.path.startswith(UPLOADS_PREFIX)
    }
    orphans = [
        path
        for path in [*folder.glob("*"), *folder.glob("*/*")]
        if path.is_file()
        and _SAVED_NAME.search(path.name)
        and path.relative_to(folder).as_posix() not in indexed
    ]
    for path in orphans:
        path.unlink(missing_ok=True)
    gone = [record.id for name, record in indexed.items() if not (folder / name).is_file() and record.id]
    index.store.delete(gone)
    if orphans or gone:
        index.store.flush()
        logger.warning("uploads: removed %d unindexed file(s), dropped %d record(s)", len(orphans), len(gone))
    return len(orphans), len(gone)


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
