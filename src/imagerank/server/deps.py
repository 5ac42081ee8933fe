"""FastAPI dependencies: the app's settings, index and thumbnail cache, as `Annotated` aliases.

They live on `app.state` (set by `create_app`), never in module globals.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from imagerank.index import Index
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
