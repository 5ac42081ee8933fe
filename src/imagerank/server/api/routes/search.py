"""POST /api/search: rank the indexed images by similarity to an uploaded image, an indexed one, or words."""

from __future__ import annotations

import json
from dataclasses import dataclass
from time import perf_counter
from typing import TypeVar

import numpy as np
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from imagerank.index.core import Index
from imagerank.server.deps import IndexDep, SettingsDep
from imagerank.server.errors import UnsupportedUploadError
from imagerank.server.schemas import (
    ERROR_RESPONSES,
    QueryInfo,
    SearchByIdRequest,
    SearchByTextRequest,
    SearchOptions,
    SearchResponse,
    SearchResult,
    Timing,
)
from imagerank.server.searching import (
    Page,
    embed_image,
    ranked_page,
    ranked_text_page,
    refined_query,
    vectors_of,
)
from imagerank.server.settings import ServerSettings
from imagerank.server.uploads import decode_upload, read_upload

router = APIRouter(prefix="/search", tags=["search"])
Options = TypeVar("Options", bound=SearchOptions)

_LIST_FIELDS = ("labels", "relevant", "not_relevant")
_SCALAR_FIELDS = ("k", "offset", "method")


def _request_body_schema() -> dict:
    """Both accepted bodies, for the OpenAPI schema (FastAPI documents one body per route by itself)."""
    form = SearchOptions.model_json_schema()
    form["properties"] = {
        "image": {"type": "string", "format": "binary", "description": "The query image."},
        **form["properties"],
    }
    form["required"] = ["image"]
    form.pop("additionalProperties", None)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form},
                "application/json": {
                    "schema": {
                        "oneOf": [
                            SearchByIdRequest.model_json_schema(),
                            SearchByTextRequest.model_json_schema(),
                        ]
                    }
                },
            },
        }
    }


@router.post("", responses=ERROR_RESPONSES, openapi_extra=_request_body_schema())
async def search(request: Request, index: IndexDep, settings: SettingsDep) -> SearchResponse:
    """Search by a **multipart** upload (field `image`, plus the options as form fields; lists repeat the
    field), by **JSON** naming an indexed image `id` ("more like this"), or by **JSON** with words in `text`
    (`{"text": "a dog on a sofa", "k": 12, "labels": []}`).

    Ids marked `not_relevant` are never returned; with feedback ids the query vector is refined with
    Rocchio's method before searching (a text's scores are refined by the marked images). Page with
    `offset` and `k`; `has_more` says whether to go on.
    """
    started = perf_counter()
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/json"):
        body = await request.body()
        if _names_text(body):
            by_text = _validated(SearchByTextRequest, body)
            query = QueryInfo(kind="text", text=by_text.text)
            return await run_in_threadpool(_search_by_text, index, by_text, query, started)
        by_id = _validated(SearchByIdRequest, body)
        plan = _Plan(index, settings, by_id, QueryInfo(kind="id", id=by_id.id), started)
        return await run_in_threadpool(_search_by_id, plan, by_id.id)
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=3 * 100 + 10)
        options, upload = _search_form(form)
        data = await read_upload(upload, settings.max_upload_bytes)
        plan = _Plan(index, settings, options, QueryInfo(kind="upload", filename=upload.filename), started)
        return await run_in_threadpool(_search_by_upload, plan, data)
    raise UnsupportedUploadError(
        "send multipart/form-data with an `image` file, or application/json naming an indexed image `id`"
    )


@dataclass(frozen=True)
class _Plan:
    """One search request, validated; run by one of the `_search_by_*` functions in a worker thread."""

    index: Index
    settings: ServerSettings
    options: SearchOptions
    query: QueryInfo
    started: float


def _search_by_id(plan: _Plan, image_id: int) -> SearchResponse:
    vector = vectors_of(plan.index, [image_id])
    return _respond(plan, vector, embed_ms=0.0, exclude={image_id})


def _names_text(body: bytes) -> bool:
    """Whether a JSON body is a search by words (a `text` field); any other goes to the search by id."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and "text" in document


def _search_by_text(
    index: Index, request: SearchByTextRequest, query: QueryInfo, started: float
) -> SearchResponse:
    page = ranked_text_page(
        index, request.text, request.k, request.offset, request.labels, request.relevant, request.not_relevant
    )
    finished = perf_counter()
    return SearchResponse(
        query=query,
        method="text",
        k=request.k,
        offset=request.offset,
        has_more=page.has_more,
        results=_results(page),
        timing=Timing(
            embed_ms=0.0,
            search_ms=round((finished - started) * 1000, 3),
            total_ms=round((finished - started) * 1000, 3),
        ),
    )


def _search_by_upload(plan: _Plan, data: bytes) -> SearchResponse:
    vector = embed_image(plan.index, decode_upload(data, plan.query.filename))
    return _respond(plan, vector, embed_ms=(perf_counter() - plan.started) * 1000, exclude=set())


def _validated(model: type[Options], data: bytes | dict) -> Options:
    try:
        if isinstance(data, dict):
            return model.model_validate(data)
        return model.model_validate_json(data)
    except ValidationError as error:
        raise RequestValidationError(
            [{**item, "loc": ("body", *item["loc"])} for item in error.errors(include_input=False)]
        ) from None


def _search_form(form: FormData) -> tuple[SearchOptions, UploadFile]:
    known = {"image", *_LIST_FIELDS, *_SCALAR_FIELDS}
    unexpected = sorted(set(form.keys()) - known)
    fields: dict = {name: form.getlist(name) for name in _LIST_FIELDS if name in form}
    fields |= {name: form[name] for name in _SCALAR_FIELDS if name in form}
    fields |= {name: "" for name in unexpected}  # let validation name them (extra fields are forbidden)
    options = _validated(SearchOptions, fields)
    upload = form.get("image")
    if not isinstance(upload, UploadFile):
        raise RequestValidationError(
            [{"loc": ("body", "image"), "msg": "an image file is required", "type": "missing"}]
        )
    return options, upload


def _respond(plan: _Plan, query: np.ndarray, embed_ms: float, exclude: set[int]) -> SearchResponse:
    options = plan.options
    search_started = perf_counter()
    method = options.method or plan.index.default_method
    fitted = None if method == "cosine" else plan.index.fitted(method)
    query = refined_query(plan.index, query, options.relevant, options.not_relevant)
    page = ranked_page(
        plan.index,
        query,
        options.k,
        options.offset,
        options.labels,
        exclude | set(options.not_relevant),
        threads=plan.settings.search_threads,
        method=method,
    )
    finished = perf_counter()
    return SearchResponse(
        query=plan.query,
        method=fitted.info.fitted_method if fitted else method,
        note=fitted.info.note if fitted else None,
        k=options.k,
        offset=options.offset,
        has_more=page.has_more,
        results=_results(page),
        timing=Timing(
            embed_ms=round(embed_ms, 3),
            search_ms=round((finished - search_started) * 1000, 3),
            total_ms=round((finished - plan.started) * 1000, 3),
        ),
    )


def _results(page: Page) -> list[SearchResult]:
    return [
        SearchResult(
            rank=hit.rank,
            id=int(hit.record.id or 0),
            score=round(hit.score, 6),
            label=hit.record.label,
            path=hit.record.path,
            width=hit.record.width,
            height=hit.record.height,
            image_url=f"/api/images/{hit.record.id}",
            thumbnail_url=f"/api/images/{hit.record.id}/thumbnail",
        )
        for hit in page.hits
    ]
