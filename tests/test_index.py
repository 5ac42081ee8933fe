"""Index with the real backbone, FAISS and SQLite: syncing folders, incremental updates, search, bad input."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from corpus import write_bad_corpus
from PIL import Image

from imagerank.embedding.decoding import file_digest
from imagerank.embedding.embedder import Embedder
from imagerank.embedding.factory import create_embedder
from imagerank.errors import (
    BadImageError,
    ImageRankError,
    IndexNotFoundError,
    ModelMismatchError,
    UnknownLabelError,
)
from imagerank.index.core import Index


def _ids_by_path(index: Index) -> dict[str, int]:
    return {record.path: record.id for record in index.store.all_records()}


@pytest.fixture
def small_index(tmp_path: Path, small_sample: Path, mobilenet: Embedder) -> Index:
    """A fresh index of `small_sample` (12 photos), synced once."""
    index = Index.create(tmp_path / "small.index", embedder=mobilenet)
    report = index.sync(small_sample, batch_size=5)
    assert len(report.indexed) == len(index) == 12
    yield index
    index.close()


def test_sync_indexes_the_sample(
    sample_index_and_report, sample_dir: Path, sample_files: list[Path], sample_vectors: np.ndarray
) -> None:
    index, report = sample_index_and_report
    relative = [path.relative_to(sample_dir).as_posix() for path in sample_files]
    assert sorted(report.indexed) == relative
    assert (report.unchanged, report.removed, report.skipped) == ([], [], [])
    assert report.summary() == "80 indexed, 0 unchanged, 0 removed, 0 skipped"
    assert len(index) == 80
    info = index.info()
    assert info["count"] == 80 and info["model"] == "mobilenet_v2" and info["dim"] == 1280
    assert info["labels"] == {path.name: 8 for path in sample_dir.iterdir()}
    assert info["root"] == str(sample_dir.resolve())

    ids = _ids_by_path(index)
    stored = index.store.vectors([ids[path] for path in relative])
    np.testing.assert_allclose(stored, sample_vectors, atol=1e-6)  # each vector filed under its own path
    record = index.records([ids["llama/image_0003.jpg"]])[0]
    with Image.open(sample_dir / record.path) as image:
        assert (record.width, record.height) == image.size
    assert record.label == "llama"
    assert record.digest == file_digest(sample_dir / record.path)
    assert index.path_of(record) == sample_dir.resolve() / "llama" / "image_0003.jpg"


def test_reopened_index_searches_by_file_and_vector(sample_index: Index, sample_dir: Path) -> None:
    query = sample_dir / "pizza" / "image_0004.jpg"
    with Index.open(sample_index.directory) as reopened:
        assert len(reopened) == 80
        scores, ids = reopened.search(query, k=5, method="cosine")
        assert ids.shape == scores.shape == (1, 5)
        top = reopened.records(ids[0])
        assert top[0].path == "pizza/image_0004.jpg"
        assert scores[0, 0] == pytest.approx(1.0, abs=1e-4)
        assert np.all(np.diff(scores[0]) <= 0)
        vector = reopened.store.vectors([top[0].id])[0]
        _, by_vector = reopened.search(vector, k=5, method="cosine")
        assert by_vector.tolist() == ids.tolist()
        with pytest.raises(ImageRankError, match="dimension 3"):
            reopened.search(np.ones(3, dtype=np.float32))


def test_search_by_id_leaves_the_query_out(sample_index: Index) -> None:
    image_id = _ids_by_path(sample_index)["dalmatian/image_0005.jpg"]
    scores, ids = sample_index.search_by_id(image_id, k=7)
    assert ids.shape == scores.shape == (1, 7)
    assert image_id not in ids[0] and -1 not in ids[0]
    assert np.all(np.diff(scores[0]) <= 0)
    assert sample_index.records(ids[0][:1])[0].label == "dalmatian"
    # by cosine, "more like this" is the image's own ranking without it (methods that re-rank by
    # neighbourhoods never see the query image as a candidate, so theirs may differ further down)
    _, by_cosine = sample_index.search_by_id(image_id, k=7, method="cosine")
    _, with_itself = sample_index.search(sample_index.store.vectors([image_id]), k=8, method="cosine")
    assert with_itself[0, 0] == image_id
    assert by_cosine[0].tolist() == with_itself[0, 1:].tolist()


def test_search_restricted_to_labels(sample_index: Index, sample_dir: Path) -> None:
    query = sample_dir / "dalmatian" / "image_0001.jpg"
    _, ids = sample_index.search(query, k=10, labels=["pizza", "llama"])
    labels = [record.label for record in sample_index.records(ids[0])]
    assert len(labels) == 10 and set(labels) <= {"pizza", "llama"}
    _, ids = sample_index.search(query, k=10, labels=["pizza"])
    assert ids[0, 8:].tolist() == [-1, -1]
    assert [record.label for record in sample_index.records(ids[0])] == ["pizza"] * 8
    with pytest.raises(UnknownLabelError, match=r"'no such label'.*llama"):
        sample_index.search(query, k=3, labels=["pizza", "no such label"])
    image_id = _ids_by_path(sample_index)["llama/image_0002.jpg"]
    with pytest.raises(UnknownLabelError, match="'cat'"):
        sample_index.search_by_id(image_id, k=3, labels=["cat"])
    _, ids = sample_index.search_by_id(image_id, k=20, labels=["llama"])
    assert image_id not in ids[0]
    assert len(sample_index.records(ids[0])) == 7


def test_a_second_sync_changes_nothing(small_index: Index, small_sample: Path) -> None:
    before = _ids_by_path(small_index)
    vectors = small_index.store.vectors(sorted(before.values()))
    report = small_index.sync(small_sample)
    assert report.indexed == [] and report.removed == [] and report.skipped == []
    assert sorted(report.unchanged) == sorted(before)
    assert _ids_by_path(small_index) == before
    np.testing.assert_array_equal(small_index.store.vectors(sorted(before.values())), vectors)


def test_changed_content_is_embedded_again_under_the_same_id(
    small_index: Index, small_sample: Path, sample_dir: Path, mobilenet: Embedder
) -> None:
    target = small_sample / "dalmatian" / "image_0001.jpg"
    before = _ids_by_path(small_index)
    old_record = small_index.records([before["dalmatian/image_0001.jpg"]])[0]
    old_mtime = target.stat().st_mtime_ns
    shutil.copyfile(sample_dir / "soccer_ball" / "image_0002.jpg", target)
    os.utime(target, ns=(old_mtime + 10**9, old_mtime + 10**9))

    report = small_index.sync(small_sample)

    assert report.indexed == ["dalmatian/image_0001.jpg"] and len(report.unchanged) == 11
    assert _ids_by_path(small_index) == before
    new_record = small_index.records([old_record.id])[0]
    assert new_record.digest == file_digest(target) != old_record.digest
    assert new_record.mtime_ns == old_mtime + 10**9
    np.testing.assert_allclose(
        small_index.store.vectors([old_record.id]), mobilenet.encode([target]), atol=1e-6
    )
    scores, ids = small_index.search(sample_dir / "soccer_ball" / "image_0002.jpg", k=1, method="cosine")
    assert ids[0, 0] == old_record.id and scores[0, 0] == pytest.approx(1.0, abs=1e-4)


def test_deleted_and_added_files(small_index: Index, small_sample: Path, sample_dir: Path) -> None:
    before = _ids_by_path(small_index)
    (small_sample / "laptop" / "image_0002.jpg").unlink()
    shutil.copy2(sample_dir / "panda" / "image_0001.jpg", small_sample / "laptop" / "new panda.jpg")

    report = small_index.sync(small_sample)

    assert report.removed == ["laptop/image_0002.jpg"]
    assert report.indexed == ["laptop/new panda.jpg"]
    assert len(small_index) == 12
    after = _ids_by_path(small_index)
    gone = before.pop("laptop/image_0002.jpg")
    assert {path: after[path] for path in before} == before
    assert after["laptop/new panda.jpg"] not in before.values()
    _, ids = small_index.search(sample_dir / "laptop" / "image_0002.jpg", k=12)
    assert gone not in ids[0]
    with pytest.raises(KeyError):
        small_index.records([gone])
    with Index.open(small_index.directory) as reopened:  # the deletion is on disk too
        assert _ids_by_path(reopened) == after


def test_another_model_is_refused(small_index: Index) -> None:
    directory = small_index.directory
    with pytest.raises(ModelMismatchError, match="mobilenet_v2") as caught:
        Index.open_or_create(directory, model="efficientnet_lite0")
    assert "efficientnet_lite0" in str(caught.value)
    with Index.open_or_create(directory, model="mobilenet_v2") as same:
        assert len(same) == 12
    lite0 = create_embedder("efficientnet_lite0", engine="torch")
    with pytest.raises(ModelMismatchError, match="efficientnet_lite0"):
        Index.open(directory, embedder=lite0)


def test_other_weights_of_the_same_model_are_refused(small_index: Index, mobilenet: Embedder) -> None:
    retrained = Embedder(
        replace(mobilenet.spec, weights_id="my-mobilenet.pth#0123456789ab"), mobilenet.engine
    )
    with pytest.raises(ModelMismatchError, match=r"my-mobilenet\.pth"):
        Index.open(small_index.directory, embedder=retrained)


def test_another_root_is_refused(sample_index: Index, small_sample: Path) -> None:
    count = len(sample_index)
    with pytest.raises(ImageRankError, match="was built from") as caught:
        sample_index.sync(small_sample)
    assert str(small_sample.resolve()) in str(caught.value)
    assert len(sample_index) == count


def test_a_missing_folder_does_not_claim_the_index(
    tmp_path: Path, small_sample: Path, mobilenet: Embedder
) -> None:
    with Index.create(tmp_path / "typo.index", embedder=mobilenet) as index:
        with pytest.raises(BadImageError, match="no such folder"):
            index.sync(tmp_path / "phtos")
        assert index.root is None
        assert len(index.sync(small_sample).indexed) == 12
    with Index.open(tmp_path / "typo.index") as reopened:
        assert reopened.root == small_sample.resolve()


def test_missing_or_existing_index(tmp_path: Path, sample_index: Index) -> None:
    with pytest.raises(IndexNotFoundError, match="imagerank index"):
        Index.open(tmp_path / "nothing here")
    with pytest.raises(ImageRankError, match="already exists"):
        Index.create(sample_index.directory)


def test_bad_files_are_reported_and_nothing_indexed_is_lost(small_index: Index, small_sample: Path) -> None:
    before = _ids_by_path(small_index)
    expected = write_bad_corpus(small_sample)
    good = sorted(name for name, reason in expected.items() if reason is None)
    bad = {name: reason for name, reason in expected.items() if reason is not None}

    report = small_index.sync(small_sample, batch_size=4)

    skipped = {
        error.path.relative_to(small_sample.resolve()).as_posix(): error.reason for error in report.skipped
    }
    assert skipped.keys() == bad.keys()
    for name, keyword in bad.items():
        assert keyword in skipped[name], (name, skipped[name])
    assert sorted(report.indexed) == good
    assert sorted(report.unchanged) == sorted(before)
    assert len(small_index) == len(before) + len(good)
    after = _ids_by_path(small_index)
    assert {path: after[path] for path in before} == before

    unicode_name = "sub folder/café photo ü.jpg"
    record = small_index.records([after[unicode_name]])[0]
    assert record.label == "sub folder" and (record.width, record.height) == (40, 30)
    rotated = small_index.records([after["exif_rotated.jpg"]])[0]
    assert rotated.label is None and (rotated.width, rotated.height) == (32, 64)
    _, ids = small_index.search(small_sample / unicode_name, k=1)
    assert ids[0, 0] == after[unicode_name]

    again = small_index.sync(small_sample, batch_size=4)
    assert again.indexed == [] and len(again.skipped) == len(bad)
    assert _ids_by_path(small_index) == after


def test_files_whose_names_are_not_utf8_are_skipped_with_a_printable_reason(
    small_index: Index, small_sample: Path
) -> None:
    before = _ids_by_path(small_index)
    photo = small_sample / "laptop" / "image_0001.jpg"
    latin1_file = small_sample / "laptop" / os.fsdecode(b"ordinateur \xe9t\xe9.jpg")
    latin1_folder = small_sample / os.fsdecode(b"caf\xe9")
    latin1_folder.mkdir()
    shutil.copy2(photo, latin1_file)
    shutil.copy2(photo, latin1_folder / "image_0001.jpg")

    report = small_index.sync(small_sample)

    reason = "its name is not valid UTF-8; rename it to index it"
    assert sorted(str(error) for error in report.skipped) == [
        f"{small_sample.resolve()}/caf\\xe9/image_0001.jpg: {reason}",
        f"{small_sample.resolve()}/laptop/ordinateur \\xe9t\\xe9.jpg: {reason}",
    ]
    assert report.indexed == [] and _ids_by_path(small_index) == before
    added = small_index.add([latin1_file, photo])
    assert [error.path for error in added.skipped] == [latin1_file.resolve()]
    assert added.indexed == ["laptop/image_0001.jpg"]
    assert _ids_by_path(small_index) == before


def test_an_index_inside_the_folder_it_indexes_leaves_its_own_files_out(
    small_sample: Path, mobilenet: Embedder
) -> None:
    index = Index.create(small_sample / "my.index", embedder=mobilenet)
    first = index.sync(small_sample)
    photo = small_sample / "laptop" / "image_0001.jpg"
    for written in ("thumbnails/7-0123-256.jpg", "uploads/laptop/upload.jpg"):  # as a server writes them
        (index.directory / written).parent.mkdir(parents=True)
        shutil.copy2(photo, index.directory / written)

    again = index.sync(small_sample)

    assert len(first.indexed) == 12 and again.indexed == [] and len(index) == 12
    assert not any(record.path.startswith("my.index/") for record in index.store.all_records())
    assert "thumbnails" not in index.store.labels()
    index.close()


def test_moved_renamed_or_touched_files_keep_their_vectors_without_being_embedded_again(
    small_index: Index, small_sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _ids_by_path(small_index)
    vectors = {path: small_index.store.vectors([image_id])[0] for path, image_id in before.items()}
    embedded: list[Path] = []
    real_encode = small_index.embedder.iter_encode_files

    def recording_encode(files, *args, **kwargs):
        embedded.extend(files)
        return real_encode(files, *args, **kwargs)

    monkeypatch.setattr(small_index.embedder, "iter_encode_files", recording_encode)
    (small_sample / "strawberry").rename(small_sample / "fruit")
    (small_sample / "laptop" / "image_0001.jpg").rename(small_sample / "laptop" / "renamed.jpg")
    touched = small_sample / "dalmatian" / "image_0002.jpg"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    shutil.copyfile(small_sample / "dalmatian" / "image_0003.jpg", small_sample / "dalmatian" / "copy.jpg")

    report = small_index.sync(small_sample)

    moved = {
        f"fruit/{path.removeprefix('strawberry/')}": path for path in before if path.startswith("strawberry/")
    }
    moved["laptop/renamed.jpg"] = "laptop/image_0001.jpg"
    assert sorted(report.reused) == sorted([*moved, "dalmatian/image_0002.jpg"])
    assert sorted(report.indexed) == sorted([*report.reused, "dalmatian/copy.jpg"])
    assert embedded == [small_sample.resolve() / "dalmatian" / "copy.jpg"]  # new content only
    assert sorted(report.removed) == sorted(moved.values())
    after = _ids_by_path(small_index)
    assert after["dalmatian/image_0002.jpg"] == before["dalmatian/image_0002.jpg"]
    for new_path, old_path in moved.items():
        np.testing.assert_array_equal(small_index.store.vectors([after[new_path]])[0], vectors[old_path])
    assert {record.label for record in small_index.records([after[path] for path in moved])} == {
        "fruit",
        "laptop",
    }
    assert "strawberry" not in small_index.store.labels() and len(small_index) == 13


def test_a_file_gone_bad_keeps_its_indexed_vector(small_index: Index, small_sample: Path) -> None:
    before = _ids_by_path(small_index)
    target = small_sample / "strawberry" / "image_0003.jpg"
    vector = small_index.store.vectors([before["strawberry/image_0003.jpg"]])
    target.write_bytes(target.read_bytes()[:300])

    report = small_index.sync(small_sample)

    assert [(error.path.name, error.reason) for error in report.skipped] == [
        ("image_0003.jpg", "truncated or corrupt image data")
    ]
    assert _ids_by_path(small_index) == before
    np.testing.assert_array_equal(small_index.store.vectors([before["strawberry/image_0003.jpg"]]), vector)
