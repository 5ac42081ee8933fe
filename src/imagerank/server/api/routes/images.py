"""Indexed images: the file, a cached thumbnail, and adding new images to the index.

Only indexed files are served: the path comes from the image's record and the index's root, never from
the client.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path, PurePosixPath
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, Response
from starlette.concurrency import run_in_threadpool

from imagerank.index import Index
from imagerank.server.deps import IndexDep, SettingsDep, ThumbnailsDep
from imagerank.server.errors import ImageFileMissingError, InvalidRequestError, NoRootFolderError
from imagerank.server.schemas import ERROR_RESPONSES, AddedImage, AddResponse
from imagerank.server.searching import record_of
from imagerank.server.uploads import checked_label, decode_upload, read_upload, saved_upload
from imagerank.store import ImageRecord

router = APIRouter(prefix="/images", tags=["images"])

ImageIdParam = Annotated[int, PathParam(ge=0, le=2**53, description="An indexed image's id.")]
MAX_FILES_PER_ADD = 32
NO_ROOT_RESPONSE = {**ERROR_RESPONSES[404], "description": "The index has no folder yet."}
_CACHE_CONTROL = {"Cache-Control": "private, max-age=3600"}
_IMAGE_RESPONSES = {
    **{code: ERROR_RESPONSES[code] for code in (404, 422)},
    200: {"content": {"image/*": {"schema": {"type": "string", "format": "binary"}}}},
}


@router.get("/{image_id}", response_class=FileResponse, responses=_IMAGE_RESPONSES)
def image_file(image_id: ImageIdParam, index: IndexDep) -> FileResponse:
    """The indexed image file, as it is on disk."""
    source = _source_file(index, record_of(index, image_id))
    media_type = mimetypes.guess_type(source.name)[0] or "application/octet-stream"
    return FileResponse(source, media_type=media_type, headers=_CACHE_CONTROL)


@router.get("/{image_id}/thumbnail", response_class=Response, responses=_IMAGE_RESPONSES)
def thumbnail(image_id: ImageIdParam, index: IndexDep, thumbnails: ThumbnailsDep) -> Response:
    """A JPEG no larger than the configured thumbnail size, made once and cached."""
    record = record_of(index, image_id)
    data = thumbnails.thumbnail(record, _source_file(index, record))
    return Response(data, media_type="image/jpeg", headers=_CACHE_CONTROL)


@router.post("", status_code=201, responses={**ERROR_RESPONSES, 409: NO_ROOT_RESPONSE})
async def add_images(
    images: Annotated[list[UploadFile], File(description=f"Image files (at most {MAX_FILES_PER_ADD}).")],
    index: IndexDep,
    settings: SettingsDep,
    label: Annotated[
        str | None, Form(description="Label: the folder under the indexed root to store them in.")
    ] = None,
) -> AddResponse:
    """Store images in the indexed folder and index them, all or none: every file is checked first, and
    they become searchable together, in one store transaction. The whole request is limited to the upload
    size limit."""
    if len(images) > MAX_FILES_PER_ADD:
        raise InvalidRequestError(f"at most {MAX_FILES_PER_ADD} images per request, got {len(images)}")
    root = index.root
    if root is None:
        raise NoRootFolderError("this index has no folder yet; index one with `imagerank index` first")
    if label:
        checked_label(label)
    files = [await read_upload(upload, settings.max_upload_bytes) for upload in images]
    for data, upload in zip(files, images, strict=True):
        await run_in_threadpool(decode_upload, data, upload.filename)
    added = await run_in_threadpool(_store_and_index, index, root, files, label)
    return AddResponse(added=added, count=len(index))


def _store_and_index(index: Index, root: Path, files: list[bytes], label: str | None) -> list[AddedImage]:
    paths = [saved_upload(data, root, label) for data in files]
    report = index.add(paths, batch_size=len(paths))
    if report.skipped:
        raise report.skipped[0]
    wanted = {path.relative_to(root).as_posix() for path in paths}
    return [
        AddedImage(id=int(record.id or 0), path=record.path, label=record.label)
        for record in index.store.all_records()
        if record.path in wanted
    ]


def _source_file(index: Index, record: ImageRecord) -> Path:
    """The file of an indexed image. The record's path is relative; refuse anything that would leave root."""
    relative = PurePosixPath(record.path)
    if index.root is None or relative.is_absolute() or ".." in relative.parts:
        raise ImageFileMissingError(int(record.id or 0), record.path)
    source = index.root.joinpath(*relative.parts)
    if not source.is_file():
        raise ImageFileMissingError(int(record.id or 0), record.path)
    return source
