"""Health and statistics of the served index."""

from fastapi import APIRouter

from imagerank import __version__
from imagerank.index.fitted import describe_methods
from imagerank.server.deps import IndexDep, ReadAccess, SettingsDep
from imagerank.server.schemas import Health, LabelCount, MethodFit, Methods, Stats

router = APIRouter(tags=["meta"])


@router.get("/health")
def health(index: IndexDep) -> Health:
    """Liveness: answers as soon as the index is open and the backbone loaded."""
    return Health(status="ok", count=len(index))


SUGGESTED_METHODS = ("cosine", "probe+qe", "kreciprocal", "dba+kreciprocal", "lda", "probe")


@router.get("/methods", dependencies=[ReadAccess])
def methods(index: IndexDep) -> Methods:
    """The ranking methods a search may ask for, the index's default, and what each saved fit learned from."""
    ranking = index.ranking_info()
    default = ranking["default_method"]
    return Methods(
        default=default,
        **describe_methods(),
        suggested=list(dict.fromkeys([default, *SUGGESTED_METHODS])),
        labelled_images=ranking["labelled_images"],
        unlabelled_images=ranking["unlabelled_images"],
        labels=ranking["labels"],
        fits=[MethodFit(**{key: fit[key] for key in MethodFit.model_fields}) for fit in ranking["fits"]],
    )


@router.get("/stats", dependencies=[ReadAccess])
def stats(index: IndexDep, settings: SettingsDep) -> Stats:
    """The backbone, the number of images (and of uploads among them), and the images per label."""
    labels = [LabelCount(label=label, count=count) for label, count in index.store.labels().items()]
    return Stats(
        model=index.model,
        dim=index.store.dim,
        count=len(index),
        labels=labels,
        uploads=index.upload_count(),
        max_upload_bytes=settings.max_upload_bytes,
        writable=settings.allow_uploads,
        version=__version__,
    )
