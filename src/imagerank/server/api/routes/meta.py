"""Health and statistics of the served index."""

from fastapi import APIRouter

from imagerank import __version__
from imagerank.server.deps import IndexDep, ReadAccess, SettingsDep
from imagerank.server.schemas import Health, LabelCount, Stats

router = APIRouter(tags=["meta"])


@router.get("/health")
def health(index: IndexDep) -> Health:
    """Liveness: answers as soon as the index is open and the backbone loaded."""
    return Health(status="ok", count=len(index))


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
        version=__version__,
    )
