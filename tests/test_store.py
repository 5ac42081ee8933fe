"""FaissStore with real FAISS and SQLite: FAISS-shaped results, upserts, deletes, filters, rebuilds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from imagerank.errors import ImageRankError
from imagerank.store.base import DATABASE, ImageRecord
from imagerank.store.faiss_store import FaissStore

DIM = 16
LABELS = ("cat", "cat", "dog", "dog", "dog", None)


def _record(path: str, label: str | None = None, size: int = 100) -> ImageRecord:
    return ImageRecord(
        path=path, label=label, digest=f"digest-{path}", size=size, mtime_ns=7, width=3, height=2
    )


def _unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def filled(tmp_path: Path) -> tuple[FaissStore, list[int], np.ndarray]:
    """A store with six images (two cats, three dogs, one unlabelled) and their vectors."""
    store = FaissStore(tmp_path, DIM)
    vectors = _unit_vectors(len(LABELS))
    ids = store.upsert([_record(f"img{i}.jpg", label) for i, label in enumerate(LABELS)], vectors)
    yield store, ids, vectors
    store.close()


def _faiss_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("vectors-*.faiss"))


def test_search_is_faiss_shaped_and_best_first(filled) -> None:
    store, ids, vectors = filled
    queries = vectors[[2, 4]]
    scores, found = store.search(queries, k=4)
    assert scores.shape == found.shape == (2, 4)
    assert scores.dtype == np.float32 and found.dtype == np.int64
    assert found[:, 0].tolist() == [ids[2], ids[4]]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-6)
    assert np.all(np.diff(scores, axis=1) <= 0)
    brute_force = np.argsort(-(queries @ vectors.T), axis=1)[:, :4]
    assert found.tolist() == np.asarray(ids)[brute_force].tolist()
    np.testing.assert_allclose(
        scores, np.take_along_axis(queries @ vectors.T, brute_force, axis=1), atol=1e-6
    )


def test_k_beyond_the_count_pads_with_minus_one(filled) -> None:
    store, ids, vectors = filled
    scores, found = store.search(vectors[0], k=9)
    assert found.shape == (1, 9)
    assert sorted(found[0, :6].tolist()) == sorted(ids)
    assert found[0, 6:].tolist() == [-1, -1, -1]
    assert np.all(scores[0, 6:] < -1)


def test_upserting_a_known_path_keeps_its_id_and_replaces_the_vector(filled) -> None:
    store, ids, vectors = filled
    replacement = _unit_vectors(1, seed=99)
    generation = store.generation

    (same_id,) = store.upsert([_record("img3.jpg", "wolf", size=555)], replacement)

    assert same_id == ids[3]
    assert len(store) == len(LABELS)
    assert store.generation == generation + 1
    assert store.change_count == len(LABELS) + 1  # every image written or removed, counted
    np.testing.assert_array_equal(store.vectors([same_id]), replacement)
    (record,) = store.records([same_id])
    assert (record.path, record.label, record.size) == ("img3.jpg", "wolf", 555)
    scores, found = store.search(replacement, k=1)
    assert found[0, 0] == same_id and scores[0, 0] == pytest.approx(1.0, abs=1e-6)
    _, found_old = store.search(vectors[3], k=len(LABELS))
    assert found_old[0, 0] != same_id
    assert store.labels() == {None: 1, "cat": 2, "dog": 2, "wolf": 1}


def test_new_paths_get_new_ids(filled) -> None:
    store, ids, _ = filled
    (new_id,) = store.upsert([_record("new.jpg")], _unit_vectors(1, seed=5))
    assert new_id not in ids and len(store) == len(LABELS) + 1


def test_delete_removes_from_search_records_and_vectors(filled) -> None:
    store, ids, vectors = filled
    store.delete([ids[1], ids[4]])
    assert len(store) == len(LABELS) - 2
    assert store.change_count == len(LABELS) + 2
    _, found = store.search(vectors, k=len(LABELS))
    assert ids[1] not in found and ids[4] not in found
    assert (found[:, -2:] == -1).all()
    with pytest.raises(KeyError):
        store.records([ids[1]])
    with pytest.raises(KeyError):
        store.vectors([ids[4]])
    assert store.labels() == {None: 1, "cat": 1, "dog": 2}
    store.delete([])  # nothing to do
    assert len(store) == len(LABELS) - 2


def test_label_filter(filled) -> None:
    store, ids, vectors = filled
    _, found = store.search(vectors[0], k=len(LABELS), labels=["dog"])
    assert sorted(found[0, :3].tolist()) == sorted(ids[2:5])
    assert (found[0, 3:] == -1).all()
    _, found = store.search(vectors[0], k=2, labels=["cat", "dog"])
    assert found[0, 0] == ids[0] and set(found[0].tolist()) <= set(ids[:5])
    scores, found = store.search(vectors[:2], k=3, labels=["no such label"])
    assert found.shape == (2, 3) and (found == -1).all()
    assert scores.shape == (2, 3)


def test_records_and_vectors_follow_the_order_given_and_refuse_unknown_ids(filled) -> None:
    store, ids, vectors = filled
    order = [ids[5], ids[0], ids[3]]
    assert [record.id for record in store.records(order)] == order
    assert [record.path for record in store.records(order)] == ["img5.jpg", "img0.jpg", "img3.jpg"]
    np.testing.assert_array_equal(store.vectors(order), vectors[[5, 0, 3]])
    unknown = max(ids) + 100
    with pytest.raises(KeyError, match=str(unknown)):
        store.records([ids[0], unknown])
    with pytest.raises(KeyError):
        store.vectors([ids[0], unknown])


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "fp16"])
def test_vectors_are_the_stored_ones_after_replacing_removing_and_another_writer(
    tmp_path: Path, index_type: str
) -> None:
    """Flat and HNSW give vectors from their FAISS copy, fp16 from SQLite: the same bits either way, a
    replaced image's new vector, and KeyError for a removed one (HNSW keeps it in its graph, renamed)."""
    store = FaissStore(tmp_path, DIM, index_type=index_type)
    vectors = _unit_vectors(40)
    ids = store.upsert([_record(f"img{i}.jpg") for i in range(40)], vectors)
    store.flush()
    assert store.plan.type == index_type
    replacement = _unit_vectors(1, seed=7)
    store.upsert([_record("img3.jpg")], replacement)
    store.delete([ids[5]])
    other = FaissStore(tmp_path, DIM, index_type=index_type)
    (added,) = other.upsert([_record("late.jpg")], _unit_vectors(1, seed=8))
    other.close()

    expected = vectors.copy()
    expected[3] = replacement[0]
    kept = [i for i in range(40) if i != 5]
    got = store.vectors([ids[i] for i in kept] + [added])
    assert got.tobytes() == np.vstack([expected[kept], _unit_vectors(1, seed=8)]).tobytes()
    assert got.tobytes() == store._stored_vectors([ids[i] for i in kept] + [added]).tobytes()
    with pytest.raises(KeyError, match=str(ids[5])):
        store.vectors([ids[0], ids[5]])
    store.close()


def test_records_vectors_mismatch_changes_nothing(filled) -> None:
    store, _, _ = filled
    generation = store.generation
    with pytest.raises(ImageRankError, match="2 records but 1 vectors"):
        store.upsert([_record("a.jpg"), _record("b.jpg")], _unit_vectors(1))
    assert len(store) == len(LABELS) and store.generation == generation


def test_a_failing_batch_is_rolled_back_as_a_whole(filled) -> None:
    store, _, _ = filled
    generation = store.generation
    broken = ImageRecord(path=None, label="x", digest="d", size=1, mtime_ns=1, width=1, height=1)  # type: ignore[arg-type]
    with pytest.raises(sqlite3.IntegrityError):
        store.upsert([_record("fine.jpg"), broken], _unit_vectors(2, seed=3))
    assert len(store) == len(LABELS) and store.generation == generation
    assert "fine.jpg" not in {record.path for record in store.all_records()}


def test_flush_leaves_exactly_one_current_faiss_file(filled, tmp_path: Path) -> None:
    store, ids, _ = filled
    store.flush()
    store.upsert([_record("later.jpg")], _unit_vectors(1, seed=8))
    store.flush()
    store.delete([ids[0]])
    store.flush()
    assert _faiss_files(tmp_path) == [f"vectors-{store.generation}.faiss"]
    assert not [path for path in tmp_path.iterdir() if "partial" in path.name]


def test_reopening_without_the_faiss_file_rebuilds_it_from_sqlite(filled, tmp_path: Path) -> None:
    store, ids, vectors = filled
    store.flush()
    before = store.search(vectors, k=4)
    store.close()
    for path in tmp_path.glob("vectors-*.faiss"):
        path.unlink()

    reopened = FaissStore(tmp_path, DIM)

    assert len(reopened) == len(LABELS)
    np.testing.assert_array_equal(reopened.vectors(ids), vectors)
    after = reopened.search(vectors, k=4)
    np.testing.assert_array_equal(after[1], before[1])
    np.testing.assert_allclose(after[0], before[0], atol=1e-6)
    reopened.close()


def test_changes_committed_but_not_flushed_survive_a_crash(filled, tmp_path: Path) -> None:
    """Killed between the SQLite commit and the FAISS write: the stale FAISS file must not be trusted."""
    store, ids, vectors = filled
    store.flush()
    stale = _faiss_files(tmp_path)
    extra = _unit_vectors(2, seed=11)
    new_ids = store.upsert([_record("late1.jpg", "cat"), _record("late2.jpg")], extra)
    store.delete([ids[2]])
    store.close()  # no flush: the file on disk is the previous generation's
    assert _faiss_files(tmp_path) == stale

    reopened = FaissStore(tmp_path, DIM)

    assert len(reopened) == len(LABELS) + 1
    np.testing.assert_array_equal(reopened.vectors(new_ids), extra)
    _, found = reopened.search(vectors[2], k=len(LABELS) + 2)
    assert ids[2] not in found
    reopened.flush()
    assert _faiss_files(tmp_path) == [f"vectors-{reopened.generation}.faiss"]
    reopened.close()


def test_a_bumped_generation_forces_a_rebuild(filled, tmp_path: Path) -> None:
    store, ids, vectors = filled
    store.flush()
    store.close()
    with sqlite3.connect(tmp_path / DATABASE) as db:  # another writer committed; its FAISS write never came
        db.execute("DELETE FROM images WHERE id = ?", (ids[0],))
        db.execute("UPDATE state SET value = value + 1 WHERE key = 'generation'")
    db.close()

    reopened = FaissStore(tmp_path, DIM)

    assert len(reopened) == len(LABELS) - 1
    _, found = reopened.search(vectors[0], k=len(LABELS))
    assert ids[0] not in found
    reopened.close()


def test_two_writers_never_leave_a_faiss_file_without_the_others_rows(tmp_path: Path) -> None:
    """E.g. the HTTP server adding an upload while `imagerank index` syncs the same index."""
    first, second = FaissStore(tmp_path, DIM), FaissStore(tmp_path, DIM)
    vectors = _unit_vectors(2)
    (a,) = first.upsert([_record("a.jpg")], vectors[:1])
    (b,) = second.upsert([_record("b.jpg")], vectors[1:])
    first.flush()  # first's FAISS copy predates second's commit
    first.close()
    second.close()

    reopened = FaissStore(tmp_path, DIM)

    assert len(reopened) == 2
    _, found = reopened.search(vectors, k=1)
    assert found[:, 0].tolist() == [a, b]
    reopened.close()


def test_an_open_store_sees_what_another_connection_committed(tmp_path: Path) -> None:
    reader, writer = FaissStore(tmp_path, DIM), FaissStore(tmp_path, DIM)
    vectors = _unit_vectors(3)
    ids = writer.upsert([_record(f"{i}.jpg") for i in range(3)], vectors)
    writer.delete([ids[0]])

    assert len(reader) == 2
    _, found = reader.search(vectors, k=3)
    assert ids[0] not in found and {ids[1], ids[2]} <= set(found.ravel().tolist())
    assert [record.id for record in reader.records([i for i in found[0] if i >= 0])]
    np.testing.assert_array_equal(reader.vectors(ids[1:]), vectors[1:])
    reader.close()
    writer.close()
