from pathlib import Path

import numpy as np
import pytest

from imagerank.evaluation.protocols import (
    AUTO_PROTOCOL,
    SEED_PROTOCOL,
    Protocol,
    list_labelled_images,
    protocol_named,
    split_per_label,
)

CALTECH = Path(__file__).resolve().parents[1] / "../shared/datasets/caltech101/101_ObjectCategories"
needs_caltech = pytest.mark.skipif(not CALTECH.is_dir(), reason="Caltech-101 is not present")


def reference_split(labels, n):
    """The issue's pseudo-code, written out literally."""
    rng = np.random.RandomState(2021)
    train, test = [], []
    for label in sorted(set(labels.tolist())):
        idx = np.where(labels == label)[0]
        drawn = rng.choice(idx, n, replace=False)
        test.extend(drawn)
        train.extend(i for i in idx if i not in drawn)
    return np.array(train), np.array(test)


def shuffled_labels(n_labels=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"label{i}" for i in range(n_labels)], rng.integers(25, 60, n_labels))
    return labels[rng.permutation(labels.size)]


def test_split_per_label_follows_the_reference_pseudo_code():
    labels = shuffled_labels()
    train, test = split_per_label(labels, 20, seed=2021)
    expected_train, expected_test = reference_split(labels, 20)
    np.testing.assert_array_equal(test, expected_test)
    np.testing.assert_array_equal(train, expected_train)


def test_protocol_split_is_two_nested_reference_splits():
    labels = shuffled_labels(seed=1)
    split = Protocol(name="seed").split(labels)
    train, test = reference_split(labels, 20)
    candidates, queries = reference_split(labels[test], 5)
    np.testing.assert_array_equal(split.train, train)
    np.testing.assert_array_equal(split.candidates, test[candidates])
    np.testing.assert_array_equal(split.queries, test[queries])


def test_protocol_parts_are_disjoint_and_sized_per_label():
    labels = shuffled_labels(seed=2)
    split = Protocol(name="small", n_test=12, n_queries=3, seed=7).split(labels)
    parts = np.concatenate([split.train, split.candidates, split.queries])
    assert np.unique(parts).size == labels.size
    for label in np.unique(labels):
        assert (labels[split.candidates] == label).sum() == 9
        assert (labels[split.queries] == label).sum() == 3


def test_the_seed_changes_the_split():
    labels = shuffled_labels(seed=3)
    first = Protocol(name="a", seed=1).split(labels)
    second = Protocol(name="b", seed=2).split(labels)
    assert not np.array_equal(first.queries, second.queries)


def test_unseen_labels_have_no_training_images():
    labels = shuffled_labels(seed=4)
    split = Protocol(name="unseen", unseen_labels=("label1", "label4")).split(labels)
    assert not np.isin(labels[split.train], ["label1", "label4"]).any()
    assert (labels[split.queries] == "label1").sum() == 5
    assert (labels[split.train] == "label0").sum() == (labels == "label0").sum() - 20


def test_unknown_unseen_label_is_an_error():
    with pytest.raises(ValueError, match="not in the dataset"):
        Protocol(name="x", unseen_labels=("nope",)).split(shuffled_labels())


def test_too_small_label_is_an_error_naming_it():
    labels = np.array(["big"] * 30 + ["tiny"] * 20)
    with pytest.raises(ValueError, match="tiny"):
        SEED_PROTOCOL.split(labels)


def test_list_labelled_images_sorts_and_filters(tmp_path):
    for name in ["b/2.JPG", "b/1.png", "a/z.gif", "a/notes.txt", "a/tmp", "c/x.jpeg"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    paths, labels = list_labelled_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "a/z.gif",
        "b/1.png",
        "b/2.JPG",
        "c/x.jpeg",
    ]
    assert labels.tolist() == ["a", "b", "b", "c"]


@needs_caltech
def test_caltech_seed_protocol_sizes():
    paths, labels = list_labelled_images(CALTECH)
    assert len(paths) == 9144
    assert np.unique(labels).size == 102
    assert all(p.name != "tmp" for p in paths)
    split = SEED_PROTOCOL.split(labels)
    assert (split.train.size, split.candidates.size, split.queries.size) == (7104, 1530, 510)


def test_auto_is_the_seed_protocol_when_every_label_is_big_enough():
    labels = np.array(["a"] * 21 + ["b"] * 40)
    assert AUTO_PROTOCOL.fitted(labels) == SEED_PROTOCOL


def test_auto_fits_the_smallest_label_and_is_named_for_what_it_is():
    labels = np.array(["a"] * 8 + ["b"] * 40 + ["c"] * 12)
    fitted = AUTO_PROTOCOL.fitted(labels)
    assert (fitted.name, fitted.n_test, fitted.n_queries, fitted.seed) == ("per-label", 7, 1, 2021)
    split = fitted.split(labels)
    assert np.unique(labels[split.train], return_counts=True)[1].min() == 1
    assert "per-label (7 images per label searched, 1 of them queries" in fitted.describe()


def test_auto_refuses_labels_too_small_to_split_and_names_the_option_that_leaves_them_out():
    with pytest.raises(ValueError, match=r"\['b'\] have fewer than 3 images.*--min-per-label 3"):
        AUTO_PROTOCOL.fitted(np.array(["a"] * 8 + ["b"] * 2))


def test_the_seed_refusal_names_the_options_that_work():
    with pytest.raises(ValueError, match=r"--test-per-label 7 .*--protocol auto"):
        SEED_PROTOCOL.split(np.array(["a"] * 30 + ["b"] * 8))
    with pytest.raises(ValueError, match=r"--queries-per-label 1"):
        Protocol(name="per-label", n_test=6, n_queries=6).split(np.array(["a"] * 30))


def test_changed_parameters_are_no_longer_called_the_seed_protocol():
    assert protocol_named("seed").name == "seed"
    assert protocol_named("seed", 20, 5, 2021).name == "seed"
    changed = protocol_named("seed", n_test=5)
    assert (changed.name, changed.n_test, changed.n_queries) == ("per-label", 5, 1)
    assert protocol_named("seed", seed=7).name == "per-label"
    assert protocol_named("auto").name == "auto"
    assert protocol_named("auto", n_test=6, n_queries=2).name == "per-label"
    with pytest.raises(ValueError, match="use --protocol with one of auto, seed, per-label"):
        protocol_named("nope")


def test_nested_folders_are_labelled_by_the_folder_an_image_is_in(tmp_path):
    for name in ["animals/llama/1.jpg", "animals/2.jpg", "pizza/3.jpg", "top.jpg", ".hidden/4.jpg"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    paths, labels = list_labelled_images(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "animals/2.jpg",
        "animals/llama/1.jpg",
        "pizza/3.jpg",
    ]
    assert labels.tolist() == ["animals", "llama", "pizza"]
