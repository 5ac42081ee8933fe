"""The FastAPI application: `create_app(index_dir)` wires settings, the index, routers and the web page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from imagerank import __version__
from imagerank.embedding import Embedder, create_embedder
from imagerank.index import Index
from imagerank.server.api.main import api_router
from imagerank.server.errors import install_error_handlers
from imagerank.server.settings import ServerSettings
from imagerank.server.thumbnails import ThumbnailCache
from imagerank.server.uploads import BodySizeLimit
from imagerank.store import read_manifest

STATIC = Path(__file__).parent / "static"


def create_app(index_dir: str | Path, **settings: Any) -> FastAPI:
    """The app serving the index at `index_dir`. Keyword arguments override `ServerSettings` fields.

    The index is opened and the backbone loaded here, before any request, so a missing index or missing
    weights fail at start-up with a clear message rather than on the first search.

    Raises:
        IndexNotFoundError, ModelMismatchError, WeightsNotFoundError (ImageRankError subclasses).
    """
    config = ServerSettings(index=Path(index_dir), **settings)
    index = Index.open(
        config.index, weights=config.weights, engine=config.engine, embedder=_query_embedder(config)
    )
    if len(index):
        index.fitted()  # reads (or fits) the default ranking method now, not in the first search

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        index.close()

    app = FastAPI(
        title="imagerank",
        version=__version__,
        summary="Semantic image search over an imagerank index.",
        lifespan=lifespan,
    )
    app.state.settings = config
    app.state.index = index
    app.state.thumbnails = ThumbnailCache(config.thumbnail_folder, config.thumbnail_size)
    app.add_middleware(BodySizeLimit, limit=config.max_upload_bytes)
    install_error_handlers(app)
    app.include_router(api_router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    return app


def _query_embedder(config: ServerSettings) -> Embedder:
    """The index's backbone, loaded now rather than on the first search, tuned for one image at a time."""
    manifest = read_manifest(config.index)
    weights = config.weights or manifest.get("weights_file")
    return create_embedder(manifest["model"], weights=weights, engine=config.engine, latency=True)
