"""The FastAPI application: `create_app(index_dir)` wires settings, the index, routers and the web page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagerank import __version__
from imagerank.embedding.embedder import Embedder
from imagerank.embedding.factory import create_embedder
from imagerank.index.core import Index
from imagerank.server.api.main import api_router
from imagerank.server.deps import require_write_access
from imagerank.server.errors import install_error_handlers
from imagerank.server.settings import ServerSettings
from imagerank.server.thumbnails import ThumbnailCache
from imagerank.server.uploads import BodySizeLimit, reconcile_uploads
from imagerank.store.base import read_manifest

STATIC = Path(__file__).parent / "static"
# The page loads only its own files; images may also be blob: URLs of a query the user picked. The API docs
# (Swagger UI) load their script and style from a CDN and run an inline script, so they get their own policy.
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
_DOCS_PATHS = ("/docs", "/redoc")


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
    if config.allow_uploads:
        index.claim_uploads_folder(config.uploads_dir or index.uploads_folder)
        reconcile_uploads(index)
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
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.add_middleware(WritesGate)
    app.add_middleware(SecurityHeaders)
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


class SecurityHeaders:
    """ASGI middleware: a Content-Security-Policy (with frame-ancestors), nosniff and no referrer on every
    response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = DOCS_POLICY if scope["path"].startswith(_DOCS_PATHS) else PAGE_POLICY
        added = [
            (b"content-security-policy", policy.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class WritesGate:
    """ASGI middleware: refuse a write (a POST to /api/images) that lacks the right key before its body is
    read. The route's own dependency says the same, but FastAPI parses a multipart body (up to the upload
    limit, spooled to disk) before it runs dependencies."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"].rstrip("/") == "/api/images"
        ):
            try:
                require_write_access(Request(scope))
            except HTTPException as refused:
                response = JSONResponse(
                    {"detail": refused.detail}, status_code=refused.status_code, headers=refused.headers
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
