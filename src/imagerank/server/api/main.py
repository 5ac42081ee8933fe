"""All API routers under /api."""

from fastapi import APIRouter

from imagerank.server.api.routes import collection, images, meta, search

api_router = APIRouter(prefix="/api")
api_router.include_router(meta.router)
api_router.include_router(search.router)
api_router.include_router(images.router)
api_router.include_router(collection.router)
