"""Errors the server raises, and the handlers that turn every error into JSON `{"detail": "..."}`.

Library errors keep their own types; only their HTTP status is decided here. Nothing a client sends may
end in a 5xx: the catch-all handler exists for bugs, and logs them.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from imagerank.errors import (
    BadImageError,
    ImageRankError,
    IndexNotFoundError,
    InvalidLabelError,
    UnknownImageError,
    UnknownLabelError,
)

logger = logging.getLogger(__name__)

# BadImageError reasons (from imagerank.embedding.decoding) that mean "this is not an image at all".
_NOT_AN_IMAGE_REASONS = ("not an image", "empty file")


class ImageNotFoundError(ImageRankError):
    """A client named an image id that is not in the index."""

    def __init__(self, image_id: int) -> None:
        self.image_id = image_id
        super().__init__(f"no image with id {image_id} in the index")


class ImageFileMissingError(ImageRankError):
    """An indexed image's file is gone from disk (or its record points outside the indexed folder)."""

    def __init__(self, image_id: int, path: str) -> None:
        super().__init__(f"the file of image {image_id} ({path}) is missing; re-run `imagerank index`")


class UploadTooLargeError(ImageRankError):
    """A request body or uploaded file is larger than the configured limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"upload too large: the limit is {limit / 2**20:.3g} MB")


class UnsupportedUploadError(ImageRankError):
    """The request is not in a form the endpoint accepts (content type, image format)."""


class InvalidRequestError(ImageRankError):
    """A request parameter is out of bounds in a way the schema cannot say."""


def status_for(error: ImageRankError) -> int:
    """The HTTP status for a library or server error."""
    if isinstance(error, BadImageError):
        return 415 if error.reason.startswith(_NOT_AN_IMAGE_REASONS) else 422
    statuses: dict[type[ImageRankError], int] = {
        ImageNotFoundError: 404,
        ImageFileMissingError: 404,
        UploadTooLargeError: 413,
        UnsupportedUploadError: 415,
        InvalidRequestError: 422,
        UnknownLabelError: 422,
        UnknownImageError: 422,
        InvalidLabelError: 422,
        IndexNotFoundError: 503,
    }
    return next((code for kind, code in statuses.items() if isinstance(error, kind)), 400)


def message_for(error: ImageRankError) -> str:
    if isinstance(error, BadImageError):
        return f"{error.path.name}: {error.reason}"
    return str(error)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ImageRankError, _library_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)


async def _library_error(request: Request, error: ImageRankError) -> JSONResponse:
    return JSONResponse({"detail": message_for(error)}, status_code=status_for(error))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 with one readable sentence in `detail`, and the details (without echoing inputs) in `errors`."""
    errors = [
        {
            "loc": [str(part) for part in item.get("loc", ())],
            "msg": str(item.get("msg", "")),
            "type": item.get("type"),
        }
        for item in error.errors()
    ]
    summary = "; ".join(f"{'.'.join(item['loc'][1:] or item['loc'])}: {item['msg']}" for item in errors)
    return JSONResponse({"detail": summary or "invalid request", "errors": errors}, status_code=422)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"detail": str(error.detail)}, status_code=error.status_code, headers=error.headers)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error"}, status_code=500)
