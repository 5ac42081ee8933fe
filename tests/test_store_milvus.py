"""MilvusStore against real Milvus Lite, checked against FaissStore given the same upserts and queries."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from imagerank.errors import ImageRankError
from imagerank.index.core import Index
from imagerank.store.base import ImageRecord
from imagerank.store.faiss_store import FaissStore
from imagerank.store.milvus import MilvusStore, open_milvus_store

pytest.importorskip("milvus_lite")

DIM = 32
COUNT = 240
LABELS = ("cat", "dog", 'it\'s a "quoted" \\ label', None)
TOLERANCE = 1e-4

Results = tuple[np.ndarray, np.ndarray]


def _unit_vectors(count: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _record(path: str, label: str | None = None, size: int = 100) -> ImageRecord:
    return ImageRecord(path=path, label=label, digest=f"d-{path}", size=size, mtime_ns=7, width=3, height=2)


def _records(count: int) -> list[ImageRecord]:
    """Paths in one folder per label; the folder of the quoted label puts quotes and a backslash in paths."""
    return [
        _record(f"{LABELS[i % len(LABELS)]}/img {i}.jpg", LABELS[i % len(LABELS)], size=i)
        for i in range(count)
    ]


def _lite(tmp_path: Path) -> str:
    return f"milvus-lite:{tmp_path / 'images.db'}"


def _open_in_another_process(location: str) -> subprocess.CompletedProcess:
    """Runs `open_milvus_store(location)` in a new Python process."""
    probe = f"import sys, imagerank.store.milvus as m; m.open_milvus_store(sys.argv[1], {DIM})"
    return subprocess.run(
        [sys.executable, "-c", probe, location], capture_output=True, text=True, timeout=120
    )


def _count_in_another_process(db: Path) -> subprocess.CompletedProcess:
    """Counts the rows of a Milvus Lite .db in a new Python process, with pymilvus alone (faster to start)."""
    probe = (
        "import sys, pymilvus; client = pymilvus.MilvusClient(sys.argv[1]); "
        "print(client.query('images', output_fields=['count(*)'])[0]['count(*)'])"
    )
    return subprocess.run([sys.executable, "-c", probe, str(db)], capture_output=True, text=True, timeout=120)


def _assert_same_ranking(expected: Results, actual: Results) -> None:
    """Same scores within 1e-4 and the same ids in the same order, except among scores tied within 1e-4."""
    (expected_scores, expected_ids), (scores, ids) = expected, actual
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    np.testing.assert_array_equal(ids == -1, expected_ids == -1)
    np.testing.assert_allclose(scores, expected_scores, atol=TOLERANCE, rtol=0)
    gaps = np.abs(np.diff(expected_scores, axis=1)) > TOLERANCE
    untied = np.ones(expected_ids.shape, dtype=bool)
    untied[:, 1:] &= gaps
    untied[:, :-1] &= gaps
    untied &= expected_ids != -1
    np.testing.assert_array_equal(ids[untied], expected_ids[untied])


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[FaissStore, MilvusStore, list[int], np.ndarray]]:
    """A FaissStore and a Milvus Lite store given the same upserts, in three batches, and their ids."""
    faiss_store = FaissStore(tmp_path, DIM)
    milvus = open_milvus_store(_lite(tmp_path), DIM)
    records, vectors = _records(COUNT), _unit_vectors(COUNT)
    ids = []
    for batch in (slice(0, 100), slice(100, 101), slice(101, COUNT)):
        faiss_ids = faiss_store.upsert(records[batch], vectors[batch])
        assert milvus.upsert(records[batch], vectors[batch]) == faiss_ids
        ids += faiss_ids
    milvus.flush()
    yield faiss_store, milvus, ids, vectors
    faiss_store.close()
    milvus.close()


def test_same_ids_records_and_rankings_as_faiss(stores) -> None:
    faiss_store, milvus, ids, vectors = stores
    assert ids == list(range(1, COUNT + 1))
    assert len(milvus) == len(faiss_store) == COUNT
    assert milvus.all_records() == faiss_store.all_records()
    assert milvus.labels() == faiss_store.labels() == {label: COUNT // len(LABELS) for label in LABELS}
    queries = np.vstack([vectors[::7], _unit_vectors(40, seed=1)])

    found = milvus.search(queries, k=10)

    _assert_same_ranking(faiss_store.search(queries, k=10), found)
    assert found[1][:, 0].tolist()[: len(vectors[::7])] == ids[::7]


def test_k_beyond_the_count_pads_like_faiss(stores) -> None:
    faiss_store, milvus, _, vectors = stores
    scores, found = milvus.search(vectors[:2], k=COUNT + 5)
    assert found.shape == scores.shape == (2, COUNT + 5)
    assert (found[:, COUNT:] == -1).all() and (scores[:, COUNT:] == np.finfo(np.float32).min).all()
    _assert_same_ranking(faiss_store.search(vectors[:2], k=COUNT + 5), (scores, found))


def test_label_filter_runs_in_milvus_and_matches_faiss(stores) -> None:
    faiss_store, milvus, _, vectors = stores
    queries = vectors[:12]
    for labels in (["dog"], [LABELS[2]], ["cat", LABELS[2]]):
        scores, found = milvus.search(queries, k=8, labels=labels)
        assert {record.label for record in milvus.records(np.unique(found).tolist())} == set(labels)
        _assert_same_ranking(faiss_store.search(queries, k=8, labels=labels), (scores, found))
    for nothing in (["no such label"], []):
        _, found = milvus.search(queries, k=3, labels=nothing)
        assert found.shape == (12, 3) and (found == -1).all()


def test_upserting_a_known_path_keeps_its_id_and_replaces_the_vector(stores) -> None:
    faiss_store, milvus, ids, vectors = stores
    replacement = _unit_vectors(1, seed=99)
    quoted_path = f"{LABELS[2]}/img 2.jpg"  # found again only if the path is quoted right in the query
    changed = [_record(quoted_path, "wolf", size=555), _record("new.jpg")]
    both = np.vstack([replacement, _unit_vectors(1, seed=98)])

    new_ids = milvus.upsert(changed, both)

    # As in FaissStore (SQLite UPSERT with AUTOINCREMENT), the known path uses up id COUNT + 1.
    assert new_ids == faiss_store.upsert(changed, both) == [ids[2], COUNT + 2]
    assert len(milvus) == COUNT + 1
    np.testing.assert_allclose(milvus.vectors([ids[2]]), replacement, atol=1e-7)
    (record,) = milvus.records([ids[2]])
    assert (record.path, record.label, record.size) == (quoted_path, "wolf", 555)
    scores, found = milvus.search(replacement, k=1)  # no flush: the search sees the write
    assert found[0, 0] == ids[2] and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    _, found_old = milvus.search(vectors[2], k=1)
    assert found_old[0, 0] != ids[2]
    assert milvus.labels() == faiss_store.labels()
    _assert_same_ranking(faiss_store.search(vectors[:20], k=10), milvus.search(vectors[:20], k=10))


def test_a_path_repeated_in_one_batch_is_stored_once_with_the_last_values(stores) -> None:
    faiss_store, milvus, _, _ = stores
    repeated = [_record("twice.jpg", "cat"), _record("other.jpg"), _record("twice.jpg", "dog")]
    vectors = _unit_vectors(3, seed=5)
    ids = milvus.upsert(repeated, vectors)
    assert ids == faiss_store.upsert(repeated, vectors) == [COUNT + 1, COUNT + 2, COUNT + 1]
    assert milvus.records([COUNT + 1])[0].label == "dog"
    np.testing.assert_allclose(milvus.vectors([COUNT + 1]), vectors[2:], atol=1e-7)


def test_delete_removes_from_search_len_records_and_labels(stores) -> None:
    faiss_store, milvus, ids, vectors = stores
    gone = [ids[1], ids[4], ids[-1]]
    milvus.delete(gone)
    faiss_store.delete(gone)

    assert len(milvus) == COUNT - 3
    _, found = milvus.search(vectors[[1, 4, -1]], k=COUNT)
    assert not set(gone) & set(found.ravel().tolist())
    assert (found[:, -3:] == -1).all()
    for lookup in (milvus.records, milvus.vectors):
        with pytest.raises(KeyError, match=str(ids[4])):
            lookup([ids[0], ids[4]])
    assert milvus.labels() == faiss_store.labels()
    assert milvus.all_records() == faiss_store.all_records()
    milvus.delete([])
    assert len(milvus) == COUNT - 3


def test_set_labels_changes_labels_not_vectors_as_in_faiss_and_refuses_unknown_ids(stores) -> None:
    faiss_store, milvus, ids, vectors = stores
    changes = {ids[0]: "spotted", ids[1]: "spotted", ids[3]: None, ids[7]: LABELS[2]}
    for store in (faiss_store, milvus):
        store.set_labels(changes)
        with pytest.raises(KeyError, match=str(COUNT + 100)):
            store.set_labels({ids[5]: "never", COUNT + 100: "never"})  # all or none

    assert milvus.all_records() == faiss_store.all_records()
    assert [record.label for record in milvus.records(list(changes))] == list(changes.values())
    assert milvus.labels() == faiss_store.labels()
    assert milvus.labels()["spotted"] == 2 and "never" not in milvus.labels()
    np.testing.assert_allclose(milvus.vectors(ids), vectors, atol=1e-7)
    _, found = milvus.search(vectors[:5], k=3, labels=["spotted"])
    assert set(found.ravel().tolist()) == {ids[0], ids[1], -1}
    _assert_same_ranking(faiss_store.search(vectors[:20], k=10), milvus.search(vectors[:20], k=10))


def test_records_and_vectors_follow_the_order_given_and_refuse_unknown_ids(stores) -> None:
    _, milvus, ids, vectors = stores
    order = [ids[5], ids[0], ids[3], ids[5]]
    assert [record.id for record in milvus.records(order)] == order
    assert [record.path for record in milvus.records(order)][:2] == ["dog/img 5.jpg", "cat/img 0.jpg"]
    np.testing.assert_allclose(milvus.vectors(order), vectors[[5, 0, 3, 5]], atol=1e-7)
    assert milvus.records([]) == [] and milvus.vectors([]).shape == (0, DIM)
    with pytest.raises(KeyError, match=str(COUNT + 100)):
        milvus.records([ids[0], COUNT + 100])
    with pytest.raises(KeyError, match=str(COUNT + 100)):
        milvus.vectors([COUNT + 100])


def test_reopening_the_db_keeps_everything_and_never_reuses_an_id(stores, tmp_path: Path) -> None:
    faiss_store, milvus, ids, vectors = stores
    milvus.delete([ids[-1]])  # the highest id: SQLite AUTOINCREMENT does not hand it out again
    faiss_store.delete([ids[-1]])
    before = milvus.search(vectors[:10], k=5)
    # Milvus Lite lets one process open a .db; close() must stop this process's server to let another in.
    refused = _open_in_another_process(_lite(tmp_path))
    assert f"{_lite(tmp_path)}: cannot connect to Milvus" in refused.stderr
    assert "Milvus Lite lets one process at a time open a .db" in refused.stderr
    milvus.close()
    counted = _count_in_another_process(tmp_path / "images.db")
    assert counted.stdout.strip() == str(COUNT - 1), counted.stderr

    reopened = open_milvus_store(_lite(tmp_path), DIM)
    try:
        assert len(reopened) == COUNT - 1
        assert reopened.all_records() == faiss_store.all_records()
        np.testing.assert_allclose(reopened.vectors(ids[:-1]), vectors[:-1], atol=1e-7)
        _assert_same_ranking(before, reopened.search(vectors[:10], k=5))
        new = [_record("after-reopen.jpg")]
        assert reopened.upsert(new, vectors[:1]) == faiss_store.upsert(new, vectors[:1]) == [COUNT + 1]
        assert reopened.describe() == {
            "backend": "milvus-lite",
            "location": _lite(tmp_path),
            "uri": str(tmp_path / "images.db"),
            "collection": "images",
            "index_type": "FLAT",
            "metric": "IP",
        }
    finally:
        reopened.close()


def test_two_stores_in_one_process_share_the_db_until_both_close(tmp_path: Path) -> None:
    first = open_milvus_store(_lite(tmp_path), DIM)
    second = open_milvus_store(_lite(tmp_path), DIM)
    (image_id,) = first.upsert([_record("a.jpg")], _unit_vectors(1))
    first.close()
    first.close()
    assert second.records([image_id])[0].path == "a.jpg"
    second.close()


def test_the_sample_index_gives_the_same_rankings_in_milvus(sample_index: Index, tmp_path: Path) -> None:
    """Real MobileNetV2 vectors of the shipped sample, copied in id order, searched by every image."""
    faiss_store = sample_index.store
    records = faiss_store.all_records()
    ids = [record.id for record in records]
    vectors = faiss_store.vectors(ids)
    milvus = open_milvus_store(_lite(tmp_path), faiss_store.dim)
    try:
        assert milvus.upsert(records, vectors) == ids == list(range(1, len(ids) + 1))
        assert milvus.records(ids) == records
        _assert_same_ranking(faiss_store.search(vectors, k=10), milvus.search(vectors, k=10))
        label = records[0].label
        _assert_same_ranking(
            faiss_store.search(vectors, k=10, labels=[label]), milvus.search(vectors, k=10, labels=[label])
        )
    finally:
        milvus.close()


def test_hnsw_builds_an_hnsw_index_and_finds_each_vector_first(tmp_path: Path) -> None:
    store = open_milvus_store(_lite(tmp_path), DIM, index_type="hnsw")
    try:
        vectors = _unit_vectors(50)
        ids = store.upsert(_records(50), vectors)
        assert store.describe()["index_type"] == "HNSW"
        _, found = store.search(vectors, k=3)
        assert found[:, 0].tolist() == ids
    finally:
        store.close()
    with pytest.raises(ImageRankError, match="has a HNSW index, not FLAT"):
        open_milvus_store(_lite(tmp_path), DIM, index_type="flat")
    reopened = open_milvus_store(_lite(tmp_path), DIM)  # auto takes the index the collection has
    assert reopened.describe()["index_type"] == "HNSW"
    reopened.close()


@pytest.mark.parametrize(
    "location",
    [
        "milvus-lite:images.sqlite",
        "milvus-lite:",
        "milvus://localhost:19530",
        "milvus://localhost:19530/",
        "milvus:///images",
        "milvus://localhost:port/images",
        "milvus://localhost:19530/9lives",
        "milvus://localhost:19530/a-b",
        "http://localhost:19530/images",
    ],
)
def test_malformed_locations_are_refused_naming_them(location: str) -> None:
    with pytest.raises(ImageRankError, match=f"^{re.escape(location)}: "):
        open_milvus_store(location, DIM)


def test_a_collection_of_another_dimension_is_refused_naming_the_location(tmp_path: Path) -> None:
    open_milvus_store(_lite(tmp_path), DIM).close()
    with pytest.raises(
        ImageRankError, match=f"^{re.escape(_lite(tmp_path))}: .*dimension {DIM}, not {DIM * 2}"
    ):
        open_milvus_store(_lite(tmp_path), DIM * 2)
    store = open_milvus_store(_lite(tmp_path), DIM)  # the refusal released the .db
    assert len(store) == 0
    store.close()


def test_index_types_lite_cannot_build_or_nobody_knows_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ImageRankError, match="Milvus Lite cannot build IVF_PQ"):
        open_milvus_store(_lite(tmp_path), DIM, index_type="ivfpq")
    with pytest.raises(ImageRankError, match="unknown index type 'annoy'"):
        open_milvus_store(_lite(tmp_path), DIM, index_type="annoy")
    assert not (tmp_path / "images.db").exists()


def test_missing_pymilvus_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pymilvus", None)  # makes `import pymilvus` fail
    with pytest.raises(ImageRankError, match=r"pip install 'imagerank\[milvus\]'"):
        open_milvus_store(_lite(tmp_path), DIM)
