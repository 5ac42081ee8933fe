"""POST /api/labels: give indexed images a label, or their folder's label again (a write).

The labels and their counts are listed by GET /api/stats. See `imagerank.index.labelling`.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from imagerank.errors import InvalidLabelError
from imagerank.index.labelling import MAX_LABEL_CHARS, checked_label
from imagerank.server.api.routes.images import _AUTH_RESPONSES
from imagerank.server.deps import IndexDep, WriteAccess
from imagerank.server.schemas import ERROR_RESPONSES, ImageId, LabelCount

router = APIRouter(prefix="/labels", tags=["labels"])

MAX_LABEL_IDS = 1000


class LabelRequest(BaseModel):
    """Images to label, and the label."""

    model_config = ConfigDict(extra="forbid")

    ids: list[ImageId] = Field(min_length=1, max_length=MAX_LABEL_IDS, description="Indexed images' ids.")
    label: str | None = Field(
        description=f"The label (not blank, at most {MAX_LABEL_CHARS} characters, no control characters); "
        "null gives the images their folder's label again.",
        examples=["dalmatian"],
    )

    @field_validator("label")
    @classmethod
    def _assignable(cls, label: str | None) -> str | None:
        try:
            return None if label is None else checked_label(label)
        except InvalidLabelError as error:
            raise ValueError(str(error)) from None


class LabelResponse(BaseModel):
    label: str | None
    changed: list[int] = Field(description="Ids of the images whose label changed.")
    unchanged: list[int] = Field(description="Ids of the images that already had that label.")
    refitted: list[str] = Field(description="Ranking methods fitted again because of the change.")
    labels: list[LabelCount] = Field(description="Images per label afterwards.")


@router.post("", responses={422: ERROR_RESPONSES[422], **_AUTH_RESPONSES}, dependencies=[WriteAccess])
async def set_labels(request: LabelRequest, index: IndexDep) -> LabelResponse:
    """Give the images `ids` the label `label` (null: their folder's label again), all or none. The label
    overrides the folder's and is kept when the folder is indexed again. Ranking methods the change makes
    stale (a new label, or over a tenth of the labelled images changed) are fitted again before the answer,
    so the next search learns from it. Unknown ids are a 422 naming them. Needs `--allow-uploads` and, when
    the server has one, the API key."""
    change = await run_in_threadpool(index.set_labels, request.ids, request.label)
    counts = await run_in_threadpool(index.store.labels)
    return LabelResponse(
        label=change.label,
        changed=change.changed,
        unchanged=change.unchanged,
        refitted=[fitted.info.method for fitted in change.refitted],
        labels=[LabelCount(label=label, count=count) for label, count in counts.items()],
    )
