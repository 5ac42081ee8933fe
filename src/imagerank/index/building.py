"""The writing half of `Index`: indexing a folder (`sync`), adding files and uploads, and what a run did
(`IndexReport`). `Index` inherits it; it keeps no state of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from imagerank.embedding.decoding import IMAGE_EXTENSIONS, file_digest, scan_image_files
from imagerank.embedding.embedder import Embedder
from imagerank.errors import BadImageError, ImageRankError, ModelMismatchError, UnknownLabelError
from imagerank.index.files import (
    UPLOADS_PREFIX,
    _record_for,
    _relative,
    _same_stat,
    _SkippedFiles,
    _stat_key,
    _storable,
)
from imagerank.index.fitted import FittedMethod
from imagerank.index.labelling import AssignedLabels
from imagerank.store.base import DATABASE, ImageRecord, write_json_atomically


@dataclass
class IndexReport:
    """What one indexing run did."""

    indexed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[BadImageError] = field(default_factory=list)
    fitted: list[FittedMethod] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    """Of the indexed files, those whose content the index held already (moved, renamed, or only their time
    changed): stored with the vector they had, not embedded again."""
    known_bad: list[str] = field(default_factory=list)
    """Of the skipped files, those skipped by an earlier run and unchanged since: not read again."""

    def summary(self) -> str:
        known = f" ({len(self.known_bad)} as before, not read again)" if self.known_bad else ""
        reused = f" ({len(self.reused)} moved or touched, not embedded again)" if self.reused else ""
        return (
            f"{len(self.indexed)} indexed{reused}, {len(self.unchanged)} unchanged, "
            f"{len(self.removed)} removed, {len(self.skipped)} skipped{known}"
        )


class Building:
    """`Index` methods that embed files and write them to the store."""

    def sync(
        self,
        root: str | Path,
        extensions: Iterable[str] = IMAGE_EXTENSIONS,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        fit: bool = True,
    ) -> IndexReport:
        """Bring the index in line with the folder: embed new and changed files, drop deleted ones.

        With ``fit``, the default ranking method (and every other method fitted before) is then fitted
        again if the labels or vectors changed enough since its last fit (see `refit_stale`).
        """
        root = Path(root).resolve()
        # Scan first: a missing folder must fail before the index is tied to it as its root. An index kept
        # inside the folder it indexes never indexes its own files (thumbnails, uploads).
        scan = scan_image_files(root, extensions, skip_folders=[self.directory])
        self._claim_root(root)
        files, unnamed = _storable(scan.files, root)
        report = IndexReport(skipped=sorted([*scan.problems, *unnamed], key=lambda error: str(error.path)))
        known = {record.path: record for record in self.store.all_records()}
        present = {_relative(path, root) for path in files}
        with _SkippedFiles(self.directory / DATABASE) as skipped_before:
            bad = skipped_before.read()
            changed = []
            for path in files:
                relative = _relative(path, root)
                record = known.get(relative)
                if record is not None and _same_stat(record, path):
                    report.unchanged.append(record.path)
                elif relative in bad and bad[relative][:2] == _stat_key(path):
                    report.skipped.append(BadImageError(path, bad[relative][2]))
                    report.known_bad.append(relative)
                else:
                    changed.append(path)
            changed = self._store_known_content(changed, root, known, present, report)
            first_skipped = len(report.skipped)
            self._embed_and_store(changed, root, batch_size, show_progress_bar, report)
            skipped_before.remember(
                [
                    (_relative(error.path, root), *_stat_key(error.path), error.reason)
                    for error in report.skipped[first_skipped:]
                    if error.path.is_file()
                ]
            )
            indexed = set(report.indexed)
            skipped_before.forget([path for path in bad if path not in present or path in indexed])
        gone = [
            record
            for path, record in known.items()
            if path not in present and not path.startswith(UPLOADS_PREFIX)  # uploads live elsewhere
        ]
        self.store.delete([record.id for record in gone if record.id is not None])
        report.removed = [record.path for record in gone]
        with AssignedLabels(self.directory / DATABASE) as assigned:
            assigned.forget(report.removed)
            self._relabel_drifted([known[path] for path in report.unchanged], assigned.read())
        self.store.flush()
        if fit:
            report.fitted = self.refit_stale()
        return report

    def add(
        self,
        paths: Sequence[str | Path],
        batch_size: int = 32,
        show_progress_bar: bool = False,
        fit: bool = True,
    ) -> IndexReport:
        """Embed and store the given files (under the index's root; the first call sets the root).

        With ``fit``, stale fitted methods are fitted again afterwards, as after `sync`.
        """
        files = [Path(path).absolute() for path in paths]
        root = self.root or Path(os.path.commonpath([path.parent for path in files] or [Path.cwd()]))
        root = self._claim_root(root)
        report = IndexReport()
        self._embed_and_store(files, root, batch_size, show_progress_bar, report)
        self.store.flush()
        if fit:
            report.fitted = self.refit_stale()
        return report

    @property
    def uploads_folder(self) -> Path:
        """Where uploaded images are kept: the folder the manifest names, else <index>/uploads."""
        folder = self.manifest.get("uploads")
        return Path(folder) if folder else self.directory / "uploads"

    def claim_uploads_folder(self, folder: str | Path) -> Path:
        """Make `folder` this index's uploads folder (recorded in the manifest) and return it resolved.

        Raises:
            ImageRankError: the folder is inside the indexed folder (a sync would index its files a second
                time), or the index already keeps uploads elsewhere.
        """
        folder = Path(folder).resolve()
        if self.root is not None and folder.is_relative_to(self.root):
            raise ImageRankError(
                f"the uploads folder {folder} is inside the indexed folder {self.root}; choose one outside it"
            )
        current = self.uploads_folder.resolve()
        if folder != current and self.upload_count():
            raise ImageRankError(
                f"the index at {self.directory} keeps its uploads in {current}, not {folder}; "
                f"use that folder (or another --index directory)"
            )
        if folder != current or "uploads" not in self.manifest:
            self.manifest["uploads"] = str(folder)
            write_json_atomically(self.directory / "manifest.json", self.manifest)
        return folder

    def add_uploads(self, paths: Sequence[Path], batch_size: int = 32) -> IndexReport:
        """Embed and store files of the uploads folder (the label is the folder directly under it), then
        fit stale ranking methods again (a new label makes them stale)."""
        folder = self.uploads_folder.resolve()
        report = IndexReport()
        self._embed_and_store(
            [Path(path).resolve() for path in paths], folder, batch_size, False, report, prefix=UPLOADS_PREFIX
        )
        self.store.flush()
        report.fitted = self.refit_stale()
        return report

    def upload_count(self) -> int:
        """How many of the indexed images were uploaded (rather than found in the indexed folder)."""
        return sum(record.path.startswith(UPLOADS_PREFIX) for record in self.store.all_records())

    def _check_labels(self, labels: Sequence[str | None] | None) -> None:
        if not labels:
            return
        known = self.store.labels()
        unknown = [label for label in labels if label not in known]
        if unknown:
            names = sorted(str(label) for label in known if label is not None)
            shown = ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")
            raise UnknownLabelError(
                f"no indexed image has the label {unknown[0]!r}; the labels are: {shown or '(none)'}"
            )

    def _check_embedder(self, embedder: Embedder) -> None:
        spec = embedder.spec
        if spec.vector_id() != self.manifest.get("vector_id"):
            raise ModelMismatchError(
                f"the index at {self.directory} holds vectors of {self.manifest.get('vector_id')} "
                f"(model, weights, preprocessing), not of {spec.vector_id()}: vectors from different "
                f"models or preprocessing cannot be mixed"
            )

    def _claim_root(self, root: Path) -> Path:
        root = root.resolve()
        if self.root is not None and self.root != root:
            raise ImageRankError(
                f"the index at {self.directory} was built from {self.root}, not {root}; "
                f"use another --index directory for another folder"
            )
        if self.root is None:
            self.manifest["root"] = str(root)
            write_json_atomically(self.directory / "manifest.json", self.manifest)
        return root

    def _store_known_content(
        self,
        files: list[Path],
        root: Path,
        known: dict[str, ImageRecord],
        present: set[str],
        report: IndexReport,
    ) -> list[Path]:
        """Store those of ``files`` whose content an indexed image has that left its path (moved, renamed) or
        is about to be replaced at it (only its time changed), with that image's vector; return the others,
        which need embedding. Files are hashed only when some indexed image left or changed."""
        sources = {
            record.digest: record
            for path, record in known.items()
            if path not in present and not path.startswith(UPLOADS_PREFIX)
        }
        replaced = (known.get(_relative(path, root)) for path in files)
        sources |= {record.digest: record for record in replaced if record is not None}
        if not sources:
            return files
        with AssignedLabels(self.directory / DATABASE) as assigned:
            assignments = assigned.read()
        records, source_ids, rest = [], [], []
        for path in files:
            try:
                digest = file_digest(path)
                source = sources.get(digest)
                record = _record_for(path, root, digest=digest) if source is not None else None
            except OSError:
                source = None  # unreadable now: embedding it reports why
            if source is None:
                rest.append(path)
                continue
            records.append(replace(record, label=assignments.get(record.path, record.label)))
            source_ids.append(source.id)
        if records:
            self.store.upsert(records, self.store.vectors(source_ids))
            report.indexed.extend(record.path for record in records)
            report.reused.extend(record.path for record in records)
        return rest

    def _embed_and_store(
        self,
        files: list[Path],
        root: Path,
        batch_size: int,
        show_progress_bar: bool,
        report: IndexReport,
        prefix: str = "",
    ) -> None:
        files, unnamed = _storable(files, root)
        report.skipped.extend(unnamed)
        if not files:
            return
        with AssignedLabels(self.directory / DATABASE) as assigned:
            assignments = assigned.read()
        for batch in self.embedder.iter_encode_files(files, batch_size, show_progress_bar):
            report.skipped.extend(batch.errors)
            records, keep = [], []
            for position, path in enumerate(batch.paths):
                try:
                    record = _record_for(path, root, prefix)
                    records.append(replace(record, label=assignments.get(record.path, record.label)))
                    keep.append(position)
                except OSError as error:
                    report.skipped.append(BadImageError(path, f"cannot read: {error.strerror or error}"))
            self.store.upsert(records, batch.vectors[keep])
            report.indexed.extend(record.path for record in records)
