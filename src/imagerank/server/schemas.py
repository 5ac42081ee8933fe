"""Request and response bodies of the HTTP API (pydantic models; they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from imagerank.index.fitted import UnknownMethodError, checked_method
from imagerank.text.base import MAX_TEXT_CHARS, TextQueryError, checked_text

MAX_K = 100
MAX_OFFSET = 1000
MAX_FEEDBACK_IDS = 100

ImageId = Annotated[int, Field(ge=0, le=2**53, description="An indexed image's id.")]
Label = Annotated[str, Field(min_length=1, max_length=200)]


class PageOptions(BaseModel):
    """Which results: page size and position, and a label filter."""

    model_config = ConfigDict(extra="forbid")

    k: int = Field(12, ge=1, le=MAX_K, description="Number of results to return (page size).")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Number of results to skip (paging).")
    labels: list[Label] = Field(
        default_factory=list, max_length=100, description="Only return images with one of these labels."
    )


class FeedbackOptions(PageOptions):
    """Which results, and relevance feedback: ids the user marked relevant or not relevant."""

    relevant: list[ImageId] = Field(
        default_factory=list, max_length=MAX_FEEDBACK_IDS, description="Ids marked relevant (feedback)."
    )
    not_relevant: list[ImageId] = Field(
        default_factory=list,
        max_length=MAX_FEEDBACK_IDS,
        description="Ids marked not relevant (feedback); they are never returned.",
    )

    @model_validator(mode="after")
    def _marked_once(self) -> Self:
        both = sorted(set(self.relevant) & set(self.not_relevant))
        if both:
            raise ValueError(f"ids {both} are marked both relevant and not relevant")
        return self


class SearchOptions(FeedbackOptions):
    """How to search: page size and position, label filter, relevance feedback and ranking method."""

    method: str | None = Field(
        None,
        max_length=200,
        description="Ranking method: a registered name or composition (`GET /api/methods`), e.g. `cosine`, "
        "`probe+qe`, `kreciprocal`; default: the index's own. Learned methods are fitted on the index's "
        "label folders. With feedback ids, the query is first refined with Rocchio's method.",
    )

    @field_validator("method")
    @classmethod
    def _registered(cls, method: str | None) -> str | None:
        if method is None or not method.strip():
            return None
        try:
            return checked_method(method)
        except UnknownMethodError as error:
            raise ValueError(str(error)) from None


class SearchByIdRequest(SearchOptions):
    """Search with an indexed image ("more like this"); the image itself is left out of the results."""

    id: ImageId


class SearchByTextRequest(FeedbackOptions):
    """Search by words: the images that best match a text, e.g. "a dog on a sofa". With feedback ids, the
    text's scores are refined by the marked images (`imagerank.ranking.feedback_refined_scores`)."""

    text: str = Field(
        description=f"The words to search for: not blank, at most {MAX_TEXT_CHARS} characters. Matched by "
        "the backbone's text tower for clip: models, else by the offline bridge through the ImageNet classes "
        "and the index's labels.",
        examples=["a dog on a sofa"],
    )

    @field_validator("text")
    @classmethod
    def _searchable(cls, text: str) -> str:
        try:
            return checked_text(text)
        except TextQueryError as error:
            raise ValueError(str(error)) from None


class SearchResult(BaseModel):
    rank: int = Field(description="1-based rank over all pages.")
    id: int
    score: float = Field(
        description="Cosine similarity to the (refined) query; for a text query, the text ranker's score."
    )
    label: str | None
    path: str = Field(description="Path relative to the indexed folder, with forward slashes.")
    width: int
    height: int
    image_url: str
    thumbnail_url: str


class Timing(BaseModel):
    embed_ms: float = Field(
        description="Reading, decoding and embedding the uploaded query (0 by id; a text's is in search_ms)."
    )
    search_ms: float = Field(description="Feedback, vector search and metadata lookup.")
    total_ms: float


class QueryInfo(BaseModel):
    kind: Literal["upload", "id", "text"]
    id: int | None = None
    filename: str | None = None
    text: str | None = None


class SearchResponse(BaseModel):
    query: QueryInfo
    method: str = Field(description="The method that ranked the results.")
    note: str | None = Field(None, description="Why another method ranked than the one asked for, if so.")
    k: int
    offset: int
    has_more: bool = Field(description="Whether a next page (offset + k) has results.")
    results: list[SearchResult]
    timing: Timing


class LabelCount(BaseModel):
    label: str | None
    count: int


class MethodFit(BaseModel):
    method: str
    fitted_method: str = Field(description="What ranks for it (a fallback on an index with too few labels).")
    fitted_at: str
    seconds: float
    n_images: int
    n_labelled: int
    n_labels: int
    note: str | None
    stale: bool
    stale_reason: str | None


class Methods(BaseModel):
    default: str = Field(description="The index's default ranking method.")
    rankers: list[str]
    rerankers: list[str] = Field(description="Compose after a ranker with '+', e.g. probe+qe.")
    suggested: list[str] = Field(description="Methods worth offering in a menu, the default first.")
    labelled_images: int
    unlabelled_images: int
    labels: int
    fits: list[MethodFit]


class Stats(BaseModel):
    model: str
    dim: int
    count: int
    labels: list[LabelCount]
    uploads: int = Field(0, description="How many of the images were uploaded through the API.")
    max_upload_bytes: int
    writable: bool = Field(False, description="Whether the server accepts writes (uploads, labels).")
    version: str


class Health(BaseModel):
    status: Literal["ok"]
    count: int


class AddedImage(BaseModel):
    id: int
    path: str
    label: str | None


class AddResponse(BaseModel):
    added: list[AddedImage]
    count: int = Field(description="Number of images in the index afterwards.")


class ErrorResponse(BaseModel):
    detail: str


ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorResponse, "description": description}
    for code, description in (
        (404, "Unknown image id."),
        (413, "Upload larger than the limit."),
        (415, "Not an image, or an unsupported request content type."),
        (422, "Invalid parameters, or a corrupt image or decompression bomb."),
    )
}
