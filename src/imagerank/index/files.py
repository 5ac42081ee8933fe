"""The files an index reads: a file's record (relative path, label from its folder, size, oriented
dimensions), the memory of files that could not be decoded, and where uploaded images live.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PIL import Image

from imagerank.embedding.decoding import file_digest
from imagerank.errors import BadImageError
from imagerank.store.base import ImageRecord

UNLABELLED_FOLDERS = frozenset({"unlabelled", "unlabeled"})
"""Images in a folder of one of these names (or directly in the indexed folder) have no label."""
_EXIF_ORIENTATION = 0x0112
# Record paths of images uploaded over HTTP begin with this; the rest is relative to the uploads folder. A
# scanned file's relative path never holds "//", so an upload can never be taken for a file of the folder.
UPLOADS_PREFIX = "uploads://"


def _relative(path: Path, root: Path) -> str:
    try:
        relative = path.absolute().relative_to(root).as_posix()
    except ValueError:
        raise BadImageError(path, f"is outside the indexed folder {root}") from None
    try:
        relative.encode("utf-8")
    except UnicodeEncodeError:
        # the index keeps paths as SQLite text, which is UTF-8: such a name could not be stored or looked up
        raise BadImageError(path, "its name is not valid UTF-8; rename it to index it") from None
    return relative


def _storable(paths: list[Path], root: Path) -> tuple[list[Path], list[BadImageError]]:
    """Split ``paths`` into the files the index can record under ``root`` and the errors of the rest."""
    storable, errors = [], []
    for path in paths:
        try:
            _relative(path, root)
            storable.append(path)
        except BadImageError as error:
            errors.append(error)
    return storable, errors


class _SkippedFiles:
    """Files an indexing run could not use, with the size and modification time they had then.

    Kept in the index's SQLite file (its own table, whatever store holds the vectors) so the next run
    reports them without decoding them again, until they change.
    """

    def __init__(self, database: Path) -> None:
        self._db = sqlite3.connect(database, timeout=30)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS skipped (path TEXT PRIMARY KEY, size INTEGER NOT NULL, "
            "mtime_ns INTEGER NOT NULL, reason TEXT NOT NULL)"
        )

    def __enter__(self) -> _SkippedFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._db.close()

    def read(self) -> dict[str, tuple[int, int, str]]:
        rows = self._db.execute("SELECT path, size, mtime_ns, reason FROM skipped")
        return {path: (size, mtime_ns, reason) for path, size, mtime_ns, reason in rows}

    def remember(self, rows: list[tuple[str, int, int, str]]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?)", rows)

    def forget(self, paths: list[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM skipped WHERE path = ?", [(path,) for path in paths])


def _stat_key(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _same_stat(record: ImageRecord, path: Path) -> bool:
    stat = path.stat()
    return stat.st_size == record.size and stat.st_mtime_ns == record.mtime_ns


def _record_for(path: Path, root: Path, prefix: str = "", digest: str | None = None) -> ImageRecord:
    """Metadata of an image file: relative path (after `prefix`), label (parent folder), digest (read from
    the file unless given), size, mtime, oriented size."""
    stat = path.stat()
    relative = _relative(path, root)
    width, height = _oriented_size(path)
    return ImageRecord(
        path=prefix + relative,
        label=folder_label(relative),
        digest=digest or file_digest(path),
        size=stat.st_size,
        mtime_ns=stat.st_mtime_ns,
        width=width,
        height=height,
    )


def folder_label(path: str) -> str | None:
    """The label an image's folder gives it: the name of the folder it is directly in (for an upload, under
    the uploads folder); None directly in the indexed folder or in a folder named ``unlabelled``."""
    parent = Path(path.removeprefix(UPLOADS_PREFIX)).parent
    return parent.name if parent != Path(".") and parent.name not in UNLABELLED_FOLDERS else None


def _oriented_size(path: Path) -> tuple[int, int]:
    """Width and height as displayed, read from the header (EXIF rotation by 90 degrees swaps them)."""
    with Image.open(path) as image:
        width, height = image.size
        if image.getexif().get(_EXIF_ORIENTATION) in (5, 6, 7, 8):
            return height, width
    return width, height
