"""GET /api/collection: the indexed images by label, a page at a time, for browsing without a query.

Read-only: it lists what the index holds (records, never files) in label then path order.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from imagerank.errors import UnknownLabelError
from imagerank.index.core import Index
from imagerank.server.deps import IndexDep
from imagerank.server.schemas import ERROR_RESPONSES

router = APIRouter(prefix="/collection", tags=["collection"])

MAX_PAGE = 200


class CollectionImage(BaseModel):
    id: int
    path: str
    label: str | None
    width: int
    height: int
    image_url: str
    thumbnail_url: str


class CollectionPage(BaseModel):
    label: str | None
    total: int
    offset: int
    limit: int
    has_more: bool
    images: list[CollectionImage]


@router.get("", responses={422: ERROR_RESPONSES[422]})
async def collection(
    index: IndexDep,
    label: Annotated[str | None, Query(description="Only images with this label.")] = None,
    offset: Annotated[int, Query(ge=0, le=2**31)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 24,
) -> CollectionPage:
    """One page of the indexed images, ordered by label then path; click one to search "more like this"."""
    return await run_in_threadpool(_page, index, label, offset, limit)


def _page(index: Index, label: str | None, offset: int, limit: int) -> CollectionPage:
    if label is not None and label not in index.store.labels():
        raise UnknownLabelError(f"no indexed image has the label {label!r}")
    records = sorted(
        (record for record in index.store.all_records() if label is None or record.label == label),
        key=lambda record: (record.label is None, record.label or "", record.path),
    )
    window = records[offset : offset + limit]
    return CollectionPage(
        label=label,
        total=len(records),
        offset=offset,
        limit=limit,
        has_more=offset + limit < len(records),
        images=[
            CollectionImage(
                id=int(record.id or 0),
                path=record.path,
                label=record.label,
                width=record.width,
                height=record.height,
                image_url=f"/api/images/{record.id}",
                thumbnail_url=f"/api/images/{record.id}/thumbnail",
            )
            for record in window
        ],
    )
