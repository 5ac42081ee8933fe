"""FastAPI dependencies: the app's settings, index and thumbnail cache, as `Annotated` aliases, and the
API-key checks for reads and writes.

They live on `app.state` (set by `create_app`), never in module globals.
"""

from __future__ import annotations

import hmac
from typing import Annotated
from urllib.parse import unquote

from fastapi import Depends, HTTPException, Request

from imagerank.index.core import Index
from imagerank.server.settings import ServerSettings
from imagerank.server.thumbnails import ThumbnailCache


def get_settings(request: Request) -> ServerSettings:
    return request.app.state.settings


def get_index(request: Request) -> Index:
    return request.app.state.index


def get_thumbnails(request: Request) -> ThumbnailCache:
    return request.app.state.thumbnails


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
IndexDep = Annotated[Index, Depends(get_index)]
ThumbnailsDep = Annotated[ThumbnailCache, Depends(get_thumbnails)]


KEY_COOKIE = "imagerank_key"  # set by the page, so that <img> requests carry the key when reads need it


def require_read_access(request: Request) -> None:
    """With read protection on, the API key as a Bearer header (or the page's cookie): 401 / 403 without."""
    settings = get_settings(request)
    if settings.protect_reads:
        _check_key(request, settings.key, cookie_allowed=True)


def require_write_access(request: Request) -> None:
    """Writes are off unless the server allows uploads; then they need the key if one is set."""
    settings = get_settings(request)
    if not settings.allow_uploads:
        raise HTTPException(403, "uploads are off on this server; start it with --allow-uploads")
    _check_key(request, settings.key, cookie_allowed=False)


def _check_key(request: Request, key: str | None, cookie_allowed: bool) -> None:
    """401 when no key is sent, 403 when a wrong one is; the comparison takes the same time either way."""
    if key is None:
        return
    scheme, _, sent = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not sent:
        sent = unquote(request.cookies.get(KEY_COOKIE, "")) if cookie_allowed else ""
    if not sent:
        raise HTTPException(
            401,
            "this server needs an API key: send Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not hmac.compare_digest(sent.strip().encode(), key.encode()):
        raise HTTPException(
            403, "wrong API key", headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
        )


ReadAccess = Depends(require_read_access)
WriteAccess = Depends(require_write_access)
