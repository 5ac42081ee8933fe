"""Indexed images: the file, a cached thumbnail, and adding new images to the index.

Only indexed files are served: the path comes from the image's record and the index's folders, never from
the client. Both carry an ETag (the image's content digest) and are revalidated rather than re-sent.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from imagerank.errors import ImageRankError
from imagerank.index.core import Index
from imagerank.index.files import UPLOADS_PREFIX
from imagerank.server.deps import IndexDep, ReadAccess, SettingsDep, ThumbnailsDep, WriteAccess
from imagerank.server.errors import ImageFileMissingError, InvalidRequestError
from imagerank.server.schemas import ERROR_RESPONSES, AddedImage, AddResponse
from imagerank.server.searching import record_of
from imagerank.server.uploads import checked_label, decode_upload, read_upload, saved_upload
from imagerank.store.base import ImageRecord

router = APIRouter(prefix="/images", tags=["images"])

ImageIdParam = Annotated[int, PathParam(ge=0, le=2**53, description="An indexed image's id.")]
MAX_FILES_PER_ADD = 32
# The browser may keep a copy but asks again each time; an unchanged image costs a 304 without a body.
CACHE_CONTROL = "private, no-cache"
_AUTH_RESPONSES = {
    401: {**ERROR_RESPONSES[422], "description": "An API key is needed."},
    403: {**ERROR_RESPONSES[422], "description": "Wrong API key, or uploads are off."},
}
_IMAGE_RESPONSES = {
    **{code: ERROR_RESPONSES[code] for code in (404, 422)},
    **_AUTH_RESPONSES,
    200: {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}},
    304: {"description": "Not modified (the If-None-Match ETag is current)."},
}


@router.get("/{image_id}", response_class=FileResponse, responses=_IMAGE_RESPONSES, dependencies=[ReadAccess])
def image_file(image_id: ImageIdParam, index: IndexDep, request: Request) -> Response:
    """The indexed image file, as it is on disk."""
    record = record_of(index, image_id)
    source = _source_file(index, record)
    tag = f'"{record.digest}"'
    if _not_modified(request, tag):
        return _not_modified_response(tag)
    media_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
    return FileResponse(source, media_type=media_type, headers=_cache_headers(tag))


@router.get(
    "/{image_id}/thumbnail", response_class=Response, responses=_IMAGE_RESPONSES, dependencies=[ReadAccess]
)
def thumbnail(
    image_id: ImageIdParam, index: IndexDep, thumbnails: ThumbnailsDep, request: Request
) -> Response:
    """A JPEG no larger than the configured thumbnail size, made once and cached."""
    record = record_of(index, image_id)
    tag = f'"{record.digest}-t{thumbnails.size}"'
    if _not_modified(request, tag):
        return _not_modified_response(tag)
    data = thumbnails.thumbnail(record, _source_file(index, record))
    return Response(data, media_type="image/jpeg", headers=_cache_headers(tag))


@router.post(
    "", status_code=201, responses={**ERROR_RESPONSES, **_AUTH_RESPONSES}, dependencies=[WriteAccess]
)
async def add_images(
    images: Annotated[list[UploadFile], File(description=f"Image files (at most {MAX_FILES_PER_ADD}).")],
    index: IndexDep,
    settings: SettingsDep,
    label: Annotated[
        str | None, Form(description="Label: the folder under the uploads folder to store them in.")
    ] = None,
) -> AddResponse:
    """Store images in the index's uploads folder (not the indexed photo folder) and index them, all or
    none: every file is checked first, and they become searchable together, in one store transaction.
    Each keeps a safe form of its file name. Needs `--allow-uploads` and, when the server has one, the API
    key. The whole request is limited to the upload size limit."""
    if len(images) > MAX_FILES_PER_ADD:
        raise InvalidRequestError(f"at most {MAX_FILES_PER_ADD} images per request, got {len(images)}")
    if label:
        checked_label(label)
    files = [await read_upload(upload, settings.max_upload_bytes) for upload in images]
    for data, upload in zip(files, images, strict=True):
        await run_in_threadpool(decode_upload, data, upload.filename)
    names = [upload.filename for upload in images]
    added = await run_in_threadpool(_store_and_index, index, files, names, label or None)
    return AddResponse(added=added, count=len(index))


def _store_and_index(
    index: Index, files: list[bytes], names: list[str | None], label: str | None
) -> list[AddedImage]:
    folder = index.uploads_folder
    paths = [saved_upload(data, folder, label, name) for data, name in zip(files, names, strict=True)]
    wanted = {_record_path(folder, path) for path in paths}
    try:
        report = index.add_uploads(paths, batch_size=len(paths))
        if report.skipped:
            raise report.skipped[0]
    except BaseException:
        indexed = {record.path for record in index.store.all_records()}
        for path in paths:
            if _record_path(folder, path) not in indexed:
                path.unlink(missing_ok=True)
        raise
    return [
        AddedImage(id=int(record.id or 0), path=record.path, label=record.label)
        for record in index.store.all_records()
        if record.path in wanted
    ]


def _record_path(folder: Path, path: Path) -> str:
    return UPLOADS_PREFIX + path.relative_to(folder).as_posix()


def _source_file(index: Index, record: ImageRecord) -> Path:
    """The file of an indexed image. The record's path is relative (to the indexed folder or, for an
    upload, the uploads folder); refuse anything that would leave that folder."""
    relative = PurePosixPath(record.path.removeprefix(UPLOADS_PREFIX))
    if relative.is_absolute() or ".." in relative.parts:
        raise ImageFileMissingError(int(record.id or 0), record.path)
    try:
        source = index.path_of(record)
    except ImageRankError:
        raise ImageFileMissingError(int(record.id or 0), record.path) from None
    if not source.is_file():
        raise ImageFileMissingError(int(record.id or 0), record.path)
    return source


def _cache_headers(tag: str) -> dict[str, str]:
    return {"ETag": tag, "Cache-Control": CACHE_CONTROL}


def _not_modified(request: Request, tag: str) -> bool:
    sent = request.headers.get("if-none-match", "")
    return sent.strip() == "*" or tag in (part.strip().removeprefix("W/") for part in sent.split(","))


def _not_modified_response(tag: str) -> Response:
    return Response(status_code=304, headers=_cache_headers(tag))
