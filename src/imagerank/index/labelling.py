"""Labels assigned to indexed images after indexing (`Index.set_labels`, the API, the page's "save as label").

An image's label is the one assigned to it, else its folder's (`files.folder_label`). Assignments are kept
by path in the table ``assigned_labels`` of the index's ``metadata.sqlite`` (whatever store holds the
vectors), so that they outlive `imagerank index`: an unchanged file keeps its record and label, a changed
file is embedded again and gets its assigned label back, a file gone from the folder loses its assignment.
Assigning None clears the assignment: the image has its folder's label again.

The assignment is written first, then the labels in the store (one SQLite transaction in the FAISS store;
the vectors do not change). A process killed in between leaves the store behind its assignments: the next
`sync` finds every image whose label is not the one it should have and gives it that label.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imagerank.errors import InvalidLabelError, UnknownImageError
from imagerank.index.files import UNLABELLED_FOLDERS, folder_label
from imagerank.index.fitted import FittedMethod
from imagerank.store.base import DATABASE, ImageRecord

MAX_LABEL_CHARS = 200
_REFUSED_CATEGORIES = ("Cc", "Cs", "Zl", "Zp")  # control characters, lone surrogates, line breaks


@dataclass(frozen=True)
class LabelChange:
    """What `Index.set_labels` did."""

    label: str | None
    changed: list[int] = field(default_factory=list)
    """Ids of the images whose label changed, sorted."""
    unchanged: list[int] = field(default_factory=list)
    """Ids of the images that already had that label, sorted."""
    refitted: list[FittedMethod] = field(default_factory=list)
    """Ranking methods fitted again because the change made them stale."""


def checked_label(label: str) -> str:
    """``label`` when it can be assigned: not blank, no spaces around it, at most :data:`MAX_LABEL_CHARS`
    characters, no control characters or line breaks, and not a name that means "no label".

    Raises:
        InvalidLabelError: naming what is wrong.
    """
    if not isinstance(label, str) or not label.strip():
        raise InvalidLabelError("a label cannot be empty (assign None to clear a label)")
    if label != label.strip():
        raise InvalidLabelError(f"the label {label[:70]!r} begins or ends with spaces")
    if len(label) > MAX_LABEL_CHARS:
        raise InvalidLabelError(f"a label has at most {MAX_LABEL_CHARS} characters, not {len(label)}")
    if any(unicodedata.category(char) in _REFUSED_CATEGORIES for char in label):
        raise InvalidLabelError(f"the label {label[:70]!r} holds a control character or line break")
    if label.casefold() in UNLABELLED_FOLDERS:
        raise InvalidLabelError(f"{label!r} means no label; assign None to give images their folder's label")
    return label


class Labelling:
    """`Index` methods that assign labels to indexed images."""

    def set_labels(self, ids: Iterable[int], label: str | None, fit: bool = True) -> LabelChange:
        """Give the images ``ids`` the label ``label`` (None: their folder's label again), all or none.

        The assignment overrides the folder's label and outlives `sync`, even when the file changes (see
        the module docstring). With ``fit``, ranking methods the change made stale (a label appeared or
        disappeared, or more than a tenth of the labelled images changed: `fitted.staleness`) are fitted
        again at once, so the next search learns from it.

        Raises:
            InvalidLabelError: a bad label (`checked_label`) or no ids.
            UnknownImageError: ids not in the index (all of them named); nothing is changed.
        """
        wanted = sorted({int(image_id) for image_id in ids})
        if not wanted:
            raise InvalidLabelError("no image ids given")
        if label is not None:
            label = checked_label(label)
        records = self._records_or_error(wanted)
        targets = {int(record.id or 0): label or folder_label(record.path) for record in records}
        with AssignedLabels(self.directory / DATABASE) as assigned:
            if label is None:
                assigned.forget([record.path for record in records])
            else:
                assigned.assign([record.path for record in records], label)
        changed = {record.id: targets[record.id] for record in records if record.label != targets[record.id]}
        if changed:
            self.store.set_labels(changed)
        refitted = self.refit_stale() if fit and changed else []
        unchanged = [image_id for image_id in wanted if image_id not in changed]
        return LabelChange(label, sorted(changed), unchanged, refitted)

    def assigned_labels(self) -> dict[str, str]:
        """The labels assigned with `set_labels`, by image path (as in `ImageRecord.path`)."""
        with AssignedLabels(self.directory / DATABASE) as assigned:
            return assigned.read()

    def _relabel_drifted(self, records: Iterable[ImageRecord], assignments: dict[str, str]) -> None:
        """Give every one of ``records`` whose label is not its assigned (else folder) label that label."""
        drifted = {
            int(record.id or 0): expected
            for record in records
            if record.label != (expected := assignments.get(record.path, folder_label(record.path)))
        }
        if drifted:
            self.store.set_labels(drifted)

    def _records_or_error(self, ids: Sequence[int]) -> list[ImageRecord]:
        try:
            return self.store.records(ids)
        except KeyError:
            missing = [image_id for image_id in ids if not self._has_image(image_id)]
            shown = ", ".join(map(str, missing[:20])) + (
                f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            )
            plural = "s" if len(missing) > 1 else ""
            raise UnknownImageError(f"no image with id{plural} {shown} in the index") from None

    def _has_image(self, image_id: int) -> bool:
        try:
            self.store.records([image_id])
        except KeyError:
            return False
        return True


class AssignedLabels:
    """The table ``assigned_labels`` (path -> label) of an index's SQLite file, as a context manager."""

    def __init__(self, database: Path) -> None:
        self._db = sqlite3.connect(database, timeout=30)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS assigned_labels (path TEXT PRIMARY KEY, label TEXT NOT NULL)"
        )

    def __enter__(self) -> AssignedLabels:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._db.close()

    def read(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT path, label FROM assigned_labels").fetchall())

    def assign(self, paths: list[str], label: str) -> None:
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO assigned_labels VALUES (?, ?)", [(path, label) for path in paths]
            )

    def forget(self, paths: list[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM assigned_labels WHERE path = ?", [(path,) for path in paths])
