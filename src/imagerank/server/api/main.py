"""All API routers under /api. Searching reads the index, so it needs the key when reads are protected."""

from fastapi import APIRouter

from imagerank.server.api.routes import collection, images, labels, meta, search
from imagerank.server.deps import ReadAccess

api_router = APIRouter(prefix="/api")
api_router.include_router(meta.router)
api_router.include_router(search.router, dependencies=[ReadAccess])
api_router.include_router(images.router)
api_router.include_router(labels.router)
api_router.include_router(collection.router, dependencies=[ReadAccess])
