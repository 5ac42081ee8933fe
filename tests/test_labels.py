"""Labels assigned after indexing (`Index.set_labels`): kept across `sync`, cleared back to the folder's,
refused when bad, and learned from by the next search. Real backbone, real FAISS + SQLite store."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_sample

from imagerank import Embedder, Index
from imagerank.errors import InvalidLabelError, UnknownImageError
from imagerank.index.fitted import DEFAULT_METHOD, load_fit
from imagerank.store.base import DATABASE


def ids_of(index: Index, folder: str) -> list[int]:
    return sorted(
        int(record.id or 0) for record in index.store.all_records() if record.path.startswith(folder)
    )


def labels_by_path(index: Index) -> dict[str, str | None]:
    return {record.path: record.label for record in index.store.all_records()}


@pytest.fixture
def index(tmp_path: Path, small_sample: Path, mobilenet: Embedder):
    """The small sample (dalmatian, laptop, strawberry; 4 each) indexed and fitted."""
    with Index.create(tmp_path / "photos.index", embedder=mobilenet) as opened:
        opened.sync(small_sample)
        yield opened


def test_a_new_label_is_stored_and_the_next_search_uses_a_refitted_method(index: Index) -> None:
    assert index.fitted().info.n_labels == 3
    spotted = ids_of(index, "dalmatian/")[:2]
    count_before = index.store.change_count

    change = index.set_labels(spotted, "spotted dog")

    assert (change.changed, change.unchanged) == (spotted, [])
    assert [record.label for record in index.records(spotted)] == ["spotted dog"] * 2
    assert index.store.labels()["dalmatian"] == 2
    assert index.store.change_count == count_before + 2
    assert [fitted.info.n_labels for fitted in change.refitted] == [4]
    assert index.fitted().info.n_labels == 4  # what the next search ranks with
    assert load_fit(index.directory, DEFAULT_METHOD).info.n_labels == 4  # and what a reopened index reads
    assert set(index.fitted().ranker.classes_) == {"dalmatian", "laptop", "strawberry", "spotted dog"}
    _, found = index.search_by_id(spotted[0], k=3)
    assert spotted[1] in found[0].tolist()
    assert not index.ranking_info()["fits"][0]["stale"]


def test_assigning_a_label_images_already_have_changes_nothing(index: Index) -> None:
    laptops = ids_of(index, "laptop/")
    fitted_at = index.fitted().info.fitted_at
    count_before = index.store.change_count
    change = index.set_labels(laptops, "laptop")
    assert (change.changed, change.unchanged, change.refitted) == ([], laptops, [])
    assert index.store.change_count == count_before
    assert index.fitted().info.fitted_at == fitted_at


def test_an_assigned_label_outlives_sync_even_when_the_file_changes(
    index: Index, small_sample: Path, sample_dir: Path
) -> None:
    first, second = ids_of(index, "strawberry/")[:2]
    index.set_labels([first, second], "fruit")
    report = index.sync(small_sample)
    assert report.indexed == [] and report.fitted == []
    assert [record.label for record in index.records([first, second])] == ["fruit", "fruit"]

    [changed] = index.records([second])
    shutil.copy2(sample_dir / "pizza" / "image_0001.jpg", small_sample / changed.path)  # new content
    report = index.sync(small_sample)
    assert report.indexed == [changed.path]
    [record] = index.records([second])
    assert (record.label, record.digest != changed.digest) == ("fruit", True)
    assert index.assigned_labels() == {
        index.records([first])[0].path: "fruit",
        changed.path: "fruit",
    }


def test_clearing_gives_back_the_folder_label_also_after_sync(index: Index, small_sample: Path) -> None:
    dogs = ids_of(index, "dalmatian/")
    index.set_labels(dogs, "dog")
    assert "dalmatian" not in index.store.labels()

    change = index.set_labels(dogs[:3], None)
    assert change.changed == dogs[:3]
    assert [record.label for record in index.records(dogs)] == ["dalmatian"] * 3 + ["dog"]
    assert [fitted.info.n_labels for fitted in change.refitted] == [4]  # dalmatian is back
    index.sync(small_sample)
    assert [record.label for record in index.records(dogs)] == ["dalmatian"] * 3 + ["dog"]
    assert list(index.assigned_labels().values()) == ["dog"]


def test_a_removed_file_loses_its_assignment(index: Index, small_sample: Path) -> None:
    [laptop, *_] = ids_of(index, "laptop/")
    [record] = index.records([laptop])
    index.set_labels([laptop], "computer")
    (small_sample / record.path).unlink()
    index.sync(small_sample)
    assert index.assigned_labels() == {}


def test_sync_completes_a_change_that_was_cut_off_before_the_store(index: Index, small_sample: Path) -> None:
    """The assignment is written first: an index whose store lacks it (a process killed in between) gets
    it at the next sync."""
    [laptop, *_] = ids_of(index, "laptop/")
    [record] = index.records([laptop])
    with sqlite3.connect(index.directory / DATABASE) as db:
        db.execute("CREATE TABLE IF NOT EXISTS assigned_labels (path TEXT PRIMARY KEY, label TEXT NOT NULL)")
        db.execute("INSERT INTO assigned_labels VALUES (?, 'computer')", (record.path,))
    assert index.records([laptop])[0].label == "laptop"
    index.sync(small_sample)
    assert index.records([laptop])[0].label == "computer"


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (" dog", "spaces"),
        ("x" * 201, "at most 200"),
        ("two\nlines", "control character or line break"),
        ("bell\x07", "control character"),
        ("Unlabelled", "means no label"),
    ],
)
def test_a_bad_label_is_refused_and_changes_nothing(index: Index, label: str, reason: str) -> None:
    before = labels_by_path(index)
    with pytest.raises(InvalidLabelError, match=reason):
        index.set_labels([1, 2], label)
    assert labels_by_path(index) == before
    assert index.assigned_labels() == {}


def test_unknown_ids_are_named_and_nothing_changes(index: Index) -> None:
    before = labels_by_path(index)
    with pytest.raises(UnknownImageError, match="no image with ids 404, 405 in the index"):
        index.set_labels([1, 404, 2, 405], "dog")
    with pytest.raises(InvalidLabelError, match="no image ids"):
        index.set_labels([], "dog")
    assert labels_by_path(index) == before
    assert index.assigned_labels() == {}


def test_a_label_may_hold_any_printable_text(index: Index) -> None:
    label = "chien tacheté 🐶 / 'quoted' \"label\""
    index.set_labels([3], label)
    assert index.records([3])[0].label == label
    _, found = index.search_by_id(1, k=20, labels=[label])
    assert found[0][found[0] >= 0].tolist() == [3]


def test_a_few_relabelled_images_among_many_do_not_refit(
    tmp_path: Path, sample_dir: Path, mobilenet: Embedder
) -> None:
    """The existing staleness rule decides: 1 of 24 labelled images moved between existing labels is under
    the refit fraction, so the fit is kept (and `info` says it is current)."""
    photos = copy_sample(
        sample_dir, tmp_path / "photos", labels=("dalmatian", "laptop", "pizza"), per_label=8
    )
    with Index.create(tmp_path / "photos.index", embedder=mobilenet) as index:
        index.sync(photos)
        [pizza, *_] = ids_of(index, "pizza/")
        change = index.set_labels([pizza], "laptop")
        assert change.changed == [pizza] and change.refitted == []
        three = index.set_labels(ids_of(index, "pizza/")[1:4], "laptop")  # 4 of 24: over a tenth
        assert [fitted.info.n_labelled for fitted in three.refitted] == [24]
        labels = np.asarray(index.fitted().snapshot.labels)
        assert int((labels == "laptop").sum()) == 12


def test_cli_labels_by_id_and_clears(index: Index, cli) -> None:
    directory = index.directory
    dogs = ids_of(index, "dalmatian/")[:2]
    index.close()
    ids = [argument for image_id in dogs for argument in ("--id", str(image_id))]

    labelled = cli("label", "--index", directory, *ids, "--label", "spotted dog")
    assert labelled.returncode == 0, labelled.stderr
    assert "2 image(s) given the label 'spotted dog'." in labelled.stdout
    assert "Fitted hybrid again: 12 labelled images, 4 labels." in labelled.stdout
    with Index.open(directory) as reopened:
        assert [record.label for record in reopened.records(dogs)] == ["spotted dog"] * 2
        assert reopened.info()["assigned_labels"] == 2
    described = cli("info", "--index", directory, env={"COLUMNS": "400"})
    assert "spotted dog (2)" in described.stdout and "2 images labelled by id" in described.stdout

    unknown = cli("label", "--index", directory, "--id", "999", "--label", "x")
    assert unknown.returncode == 1 and "no image with id 999" in unknown.stderr
    for bad in (["--label", "a\tb"], [], ["--label", "x", "--clear"]):
        refused = cli("label", "--index", directory, *ids, *bad)
        assert refused.returncode == 2, refused.stderr
    cleared = cli("label", "--index", directory, *ids, "--clear")
    assert cleared.returncode == 0 and "2 image(s) given their folder's label." in cleared.stdout
    with Index.open(directory) as reopened:
        assert [record.label for record in reopened.records(dogs)] == ["dalmatian"] * 2


def test_an_open_index_searches_with_a_fit_another_process_wrote(index: Index, cli) -> None:
    """A server's index learns of labels set by `imagerank label` (another process) at its next search."""
    assert index.fitted().info.n_labels == 3
    dogs = ids_of(index, "dalmatian/")[:2]
    ids = [argument for image_id in dogs for argument in ("--id", str(image_id))]

    labelled = cli("label", "--index", index.directory, *ids, "--label", "spotted dog")

    assert labelled.returncode == 0, labelled.stderr
    assert index.fitted().info.n_labels == 4
    assert "spotted dog" in set(index.fitted().ranker.classes_)
    _, found = index.search_by_id(dogs[0], k=3)
    assert dogs[1] in found[0].tolist()
