"""The FAISS side of `FaissStore`: the FAISS copy of the vectors, its files (one per flushed generation),
the change log a copy behind the database replays, and removals, rebuilds and layout changes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import faiss
import numpy as np

from imagerank.store.ann import IndexPlan, build_index, plan_index
from imagerank.store.base import write_json_atomically
from imagerank.store.recall import _sample
from imagerank.store.rows import _chunk_arrays

_DEAD = -1
"""The id an HNSW layout's removed vectors are renamed to (FAISS cannot remove them from the graph)."""
_MAX_DEAD_FRACTION = 0.2


class FaissFiles:
    """`FaissStore` methods that keep the FAISS copy in line with SQLite and on disk."""

    def _faiss_path(self, generation: int) -> Path:
        return self.directory / f"vectors-{generation}.faiss"

    def _write_faiss(self) -> None:
        target = self._faiss_path(self._index_generation)
        plan_path = target.with_suffix(".json")
        partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
        write_json_atomically(plan_path, self._plan.as_dict())
        faiss.write_index(self._index, str(partial))
        partial.replace(target)
        for stale in self.directory.glob("vectors-*"):
            if stale not in (target, plan_path):
                stale.unlink(missing_ok=True)

    def _synchronise(self) -> None:
        """Bring the FAISS copy up to the committed generation, cheapest way first, from one consistent
        snapshot: replay the change log onto the copy in memory; else (no copy yet, the log trimmed past
        it, or a newer flush changed the layout) load the newest file and replay onto that; else rebuild."""
        with self._snapshot():
            generation, layouts = self._versions()
            if (generation, layouts) == (self._index_generation, self._layouts_seen):
                return
            replayable = self._index is not None and self._replayable(self._index_generation, generation)
            newest = self._newest_file(generation)
            relayout = (
                newest is not None
                and newest[0] >= self._index_generation
                and newest[1].factory(self.dim) != self._plan.factory(self.dim)
            )
            loaded = self._read_file(*newest) if newest and (relayout or not replayable) else None
            if loaded is not None:
                self._index, self._plan, self._index_generation = loaded
                self._dead_count = self._count_dead(self._index, self._plan)
            elif not replayable:
                self._index, self._plan, self._index_generation = self._rebuilt_faiss()
            self._replay_changes(self._index_generation)
            self._index_generation, self._layouts_seen = generation, layouts

    def _versions(self) -> tuple[int, int]:
        """(generation, layouts): committed changes, and flushes that changed the layout."""
        rows = self._db.execute(
            "SELECT value FROM state WHERE key IN ('generation', 'layouts') ORDER BY key"
        ).fetchall()
        return rows[0][0], rows[1][0]

    def _replayable(self, since: int, generation: int) -> bool:
        """Whether the change log holds every generation after `since`: it is trimmed at each flush, and a
        writer that does not keep it (an older imagerank) leaves a gap."""
        log_start = self._db.execute("SELECT value FROM state WHERE key = 'log_start'").fetchone()[0]
        logged = self._db.execute(
            "SELECT COUNT(DISTINCT generation) FROM changes WHERE generation > ?", (since,)
        ).fetchone()[0]
        return since >= log_start and logged == generation - since

    def _newest_file(self, generation: int) -> tuple[int, IndexPlan, Path] | None:
        """(generation, plan, path) of the newest flushed FAISS copy that the change log can bring up to
        date and that holds the requested layout."""
        written = sorted(
            (int(path.stem.split("-")[1]), path)
            for path in self.directory.glob("vectors-*.faiss")
            if path.stem.split("-")[1].isdigit()
        )
        usable = [(gen, path) for gen, path in written if gen <= generation]
        if not usable or not self._replayable(usable[-1][0], generation):
            return None
        file_generation, path = usable[-1]
        try:
            plan = IndexPlan(**json.loads(path.with_suffix(".json").read_text(encoding="utf-8")))
        except (OSError, TypeError, ValueError):
            return None
        return (file_generation, plan, path) if plan.requested == self.index_type else None

    @staticmethod
    def _read_file(generation: int, plan: IndexPlan, path: Path) -> tuple[faiss.Index, IndexPlan, int] | None:
        try:
            return faiss.read_index(str(path)), plan, generation
        except RuntimeError:
            return None  # replaced by a newer flush while we read it: rebuild instead

    def _replay_changes(self, since: int) -> None:
        """Apply the logged changes after generation `since`: drop the touched ids, add back the current
        vectors of those still present."""
        rows = self._db.execute(
            "SELECT DISTINCT id FROM changes WHERE generation > ? ORDER BY id", (since,)
        ).fetchall()
        if not rows:
            return
        touched = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        self._remove(self._index, touched)
        present = self._db.execute(
            "SELECT id, vector FROM images WHERE id IN (SELECT value FROM json_each(?)) ORDER BY id",
            (json.dumps(touched.tolist()),),
        ).fetchall()
        if present:
            present_ids, vectors = _chunk_arrays(present, self.dim)
            self._index.add_with_ids(vectors, present_ids)

    def _log_changes(self, generation_before: int, ids: Sequence[int]) -> None:
        self._db.executemany(
            "INSERT INTO changes VALUES (?, ?)", [(generation_before + 1, int(i)) for i in ids]
        )
        self._db.execute("UPDATE state SET value = value + ? WHERE key = 'change_count'", (len(ids),))

    def _trim_log(self, flushed_generation: int, relaid_out: bool) -> None:
        """Forget the changes a flushed file already holds: a copy behind it loads that file instead. A
        new layout is announced (once its file is in place) so that other copies load it."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.execute("DELETE FROM changes WHERE generation <= ?", (flushed_generation,))
            self._db.execute(
                "UPDATE state SET value = MAX(value, ?) WHERE key = 'log_start'", (flushed_generation,)
            )
            if relaid_out:
                self._db.execute("UPDATE state SET value = value + 1 WHERE key = 'layouts'")
                self._layouts_seen = self._versions()[1]
        finally:
            self._db.execute("COMMIT")

    def _rebuilt_faiss(self) -> tuple[faiss.Index, IndexPlan, int]:
        """All vectors from SQLite in a layout fit for their number, with their generation (call inside
        a snapshot)."""
        generation = self.generation
        ids = self._all_ids()
        plan = plan_index(self.index_type, len(ids), self.dim)
        training = None
        if plan.training_size():
            training = self._stored_vectors(_sample(ids, plan.training_size()))
        index = build_index(plan, self.dim, training)
        rows = self._db.execute("SELECT id, vector FROM images ORDER BY id")
        while chunk := rows.fetchmany(4096):
            chunk_ids, vectors = _chunk_arrays(chunk, self.dim)
            index.add_with_ids(vectors, chunk_ids)
        self._dead_count = 0
        return index, plan, generation

    def _current_index(self) -> faiss.Index:
        """The FAISS copy, brought up to date first if another connection has committed (or re-laid out
        the index) since."""
        if self._versions() != (self._index_generation, self._layouts_seen):
            self._synchronise()
        return self._index

    def _after_commit(self, generation_before: int, change: Callable[[faiss.Index], None]) -> None:
        """Apply our committed change to the FAISS copy, or catch up from the log (which holds our
        change too) if another connection wrote first."""
        if generation_before != self._index_generation:
            self._synchronise()
            return
        change(self._index)
        self._index_generation = generation_before + 1

    def _remove(self, index: faiss.Index, ids: np.ndarray) -> None:
        """Remove vectors by id; in layouts that cannot lose vectors (`IndexPlan.supports_removal`),
        rename them dead instead."""
        if self._plan.supports_removal:
            index.remove_ids(ids)
            return
        id_map = _id_map_view(index)
        dead = np.isin(id_map, ids)
        id_map[dead] = _DEAD
        self._dead_count += int(dead.sum())
        if dead.any() and self._plan.keeps_vectors:
            faiss.downcast_index(index).construct_rev_map()  # a removed id is then unknown to `vectors`

    @staticmethod
    def _count_dead(index: faiss.Index, plan: IndexPlan) -> int:
        return 0 if plan.supports_removal else int((_id_map_view(index) == _DEAD).sum())

    def _layout_outgrown(self, fresh: IndexPlan) -> bool:
        """Whether the collection's size calls for another layout (`fresh`), the layout's recipe changed
        (a file from an older imagerank), or too many dead vectors pile up."""
        count = len(self)
        current = self._plan
        return (
            fresh.type != current.type
            or fresh.refine != current.refine
            or fresh.lists >= 2 * max(current.lists, 1) > 2
            or self._dead_count > _MAX_DEAD_FRACTION * max(count, 1)
        )


def _id_map_view(index: faiss.Index) -> np.ndarray:
    """A writable view of an IDMap2 index's position -> id table."""
    id_map = faiss.downcast_index(index).id_map
    return faiss.rev_swig_ptr(id_map.data(), id_map.size())
