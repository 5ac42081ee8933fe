"""Learned ranking where users search: `Index.search(method=...)`, the fit kept in the index, the CLI and API.

All on the real backbone's vectors of the shipped sample (80 images, 10 labels), a real FAISS + SQLite
store, real subprocesses and a real server.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import CliRunner, copy_sample
from server_fixtures import Served, sample_server

import imagerank.index.fitted as fitted_module
from imagerank import Embedder, Index
from imagerank.index.fitted import (
    DEFAULT_METHOD,
    UNSUPERVISED_FALLBACK,
    UnknownMethodError,
    candidate_products,
    fingerprints,
    fit_path,
    list_fit_summaries,
    load_fit,
    staleness,
    store_snapshot,
    surely_current,
)
from imagerank.ranking import get_method, top_k
from imagerank.store.base import ImageRecord

METHODS = ["cosine", "probe+qe", "kreciprocal", "lda", DEFAULT_METHOD]


def labelled_arrays(index: Index) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, vectors, labels) of every image in the index, by id."""
    records = sorted(index.store.all_records(), key=lambda record: record.id)
    ids = np.array([record.id for record in records])
    labels = np.array([record.label or "" for record in records])
    return ids, index.store.vectors(ids.tolist()), labels


@pytest.mark.parametrize("method", METHODS)
def test_index_search_ranks_as_the_method_does_on_the_same_vectors(sample_index: Index, method: str) -> None:
    ids, vectors, labels = labelled_arrays(sample_index)
    query_position = 17
    ranker = get_method(method).fit(vectors[labels != ""], labels[labels != ""], vectors[labels == ""])
    others = np.delete(np.arange(len(ids)), query_position)
    expected_scores, expected = ranker.rank(vectors[[query_position]], vectors[others], k=10)

    scores, found = sample_index.search_by_id(int(ids[query_position]), k=10, method=method)

    assert found[0].tolist() == ids[others][expected[0]].tolist()
    np.testing.assert_allclose(scores[0], expected_scores[0], rtol=1e-4, atol=1e-5)


def test_excluded_images_are_not_returned_but_stay_in_the_neighbourhoods_a_method_re_ranks_with(
    sample_index: Index,
) -> None:
    ids, vectors, labels = labelled_arrays(sample_index)
    ranker = get_method("kreciprocal").fit(vectors[labels != ""], labels[labels != ""], vectors[labels == ""])
    query = vectors[[17]]
    hidden = np.isin(np.arange(len(ids)), np.arange(0, len(ids), 2))  # every other image; not the query
    scores = ranker.score(query, vectors)
    _, expected = top_k(np.where(hidden, -np.inf, scores), 10)
    _, without_them = ranker.rank(query, vectors[~hidden], k=10)
    assert ids[expected[0]].tolist() != ids[~hidden][without_them[0]].tolist()  # the two readings differ here

    _, found = sample_index.search(query, k=10, method="kreciprocal", exclude=set(ids[hidden].tolist()))

    assert found[0].tolist() == ids[expected[0]].tolist()


def test_default_method_is_learned_and_finds_the_query_image_first(
    sample_index: Index, sample_dir: Path
) -> None:
    assert sample_index.default_method == DEFAULT_METHOD != "cosine"
    _, ids = sample_index.search(sample_dir / "llama" / "image_0003.jpg", k=8)
    records = sample_index.records(ids[0])
    assert records[0].path == "llama/image_0003.jpg"
    assert [record.label for record in records] == ["llama"] * 8


def test_unknown_method_is_refused_with_the_list(sample_index: Index) -> None:
    with pytest.raises(UnknownMethodError, match="kreciprocal"):
        sample_index.search_by_id(1, k=3, method="probe+nonsense")


def test_fit_is_kept_in_the_index_and_read_back_when_reopened(
    tmp_path: Path, small_sample: Path, mobilenet: Embedder
) -> None:
    directory = tmp_path / "photos.index"
    with Index.create(directory, embedder=mobilenet) as index:
        report = index.sync(small_sample)
        assert [fitted.info.method for fitted in report.fitted] == [DEFAULT_METHOD]
        fitted_at = report.fitted[0].info.fitted_at
        expected = index.search_by_id(2, k=5)
    saved = fit_path(directory, DEFAULT_METHOD)
    assert saved.is_file()
    modified = saved.stat().st_mtime_ns

    with Index.open(directory, embedder=mobilenet) as reopened:
        found = reopened.search_by_id(2, k=5)
        assert reopened.fitted().info.fitted_at == fitted_at
        report = reopened.sync(small_sample)  # nothing changed: no refit
        assert report.fitted == []
    assert saved.stat().st_mtime_ns == modified
    np.testing.assert_array_equal(found[1], expected[1])
    np.testing.assert_allclose(found[0], expected[0], rtol=1e-6)


def test_a_new_label_makes_the_fit_stale_and_the_next_sync_refits(
    tmp_path: Path, small_sample: Path, sample_dir: Path, mobilenet: Embedder
) -> None:
    directory = tmp_path / "photos.index"
    with Index.create(directory, embedder=mobilenet) as index:
        index.sync(small_sample)
        copy_sample(sample_dir, small_sample, labels=("llama",), per_label=3)
        index.sync(small_sample, fit=False)
        [fit] = index.ranking_info()["fits"]
        assert fit["stale"] and fit["stale_reason"] == "the set of labels changed"
        assert fit["n_labels"] == 3

        report = index.sync(small_sample)
        assert [fitted.info.n_labels for fitted in report.fitted] == [4]
        assert not index.ranking_info()["fits"][0]["stale"]


def test_one_added_image_does_not_refit(tmp_path: Path, sample_dir: Path, mobilenet: Embedder) -> None:
    photos = copy_sample(
        sample_dir, tmp_path / "photos", labels=("dalmatian", "laptop", "pizza"), per_label=8
    )
    with Index.create(tmp_path / "photos.index", embedder=mobilenet) as index:
        index.sync(photos)
        shutil.copy2(sample_dir / "pizza" / "image_0001.jpg", photos / "pizza" / "extra.jpg")
        report = index.sync(photos)
        assert report.indexed == ["pizza/extra.jpg"]
        assert report.fitted == []  # 1 of 25 images changed: under the refit fraction


def test_a_fit_learns_from_the_unlabelled_images_or_a_fixed_sample_of_them_over_the_limit(
    tmp_path: Path, small_sample: Path, sample_dir: Path, mobilenet: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for position, path in enumerate(sorted((sample_dir / "llama").glob("*.jpg"))[:6]):
        shutil.copy2(path, small_sample / f"loose-{position}.jpg")  # directly in the folder: no label
    with Index.create(tmp_path / "photos.index", embedder=mobilenet) as index:
        index.sync(small_sample)
        _, vectors, labels = labelled_arrays(index)
        train, train_labels = vectors[labels != ""], labels[labels != ""]
        unlabelled = np.flatnonzero(labels == "")
        assert len(unlabelled) == 6

        def same_fit(fitted, pool: np.ndarray) -> bool:
            expected = get_method(DEFAULT_METHOD).fit(train, train_labels, vectors[pool])
            return np.allclose(fitted.ranker.mean_, expected.mean_, atol=1e-6) and np.isclose(
                fitted.ranker.known_fraction_, expected.known_fraction_
            )

        assert same_fit(index.fit(), unlabelled)  # the unlabelled images, not the labelled ones again
        assert not same_fit(index.fit(), np.arange(len(labels)))
        monkeypatch.setattr(fitted_module, "POOL_LIMIT", 4)
        sample = np.sort(np.random.default_rng(0).choice(unlabelled, 4, replace=False))
        fitted = index.fit()
        assert same_fit(fitted, sample)
        # the gate still expects as many unlabelled images per labelled one as the index holds, not the sample
        references = len(fitted.ranker.references_)
        assert fitted.ranker.unlabelled_per_reference_ == pytest.approx(6 / references)


def test_probe_products_kept_with_the_fit_are_used_only_for_images_unchanged_since(
    tmp_path: Path, small_sample: Path, mobilenet: Embedder
) -> None:
    """The default method keeps every image's probe product with its fit; a search looks them up, and
    computes them for an image added or re-embedded after the fit (no refit in between)."""
    with Index.create(tmp_path / "photos.index", embedder=mobilenet) as index:
        index.sync(small_sample)
        ids, vectors, _ = labelled_arrays(index)
        fitted = load_fit(index.directory, DEFAULT_METHOD)
        assert fitted.snapshot.ids.tolist() == ids.tolist()
        assert (fitted.fingerprints == fingerprints(vectors)).all()
        np.testing.assert_allclose(
            fitted.products, fitted.ranker.probe_products(vectors), rtol=1e-5, atol=1e-5
        )

        changed = index.store.records([int(ids[0])])[0]
        blends = vectors[[-1, -2]] + vectors[[5, 6]]  # no copy of another image: no ties
        index.store.upsert(
            [
                ImageRecord(**{**vars(changed), "digest": "re-embedded", "id": None}),
                ImageRecord("late.jpg", None, "late", 1, 1, 1, 1),
            ],
            blends / np.linalg.norm(blends, axis=1, keepdims=True),
        )
        ids, vectors, _ = labelled_arrays(index)
        products = candidate_products(fitted, ids, vectors)
        np.testing.assert_allclose(products, fitted.ranker.probe_products(vectors), rtol=1e-5, atol=1e-5)
        assert not np.allclose(products[0], fitted.products[0], atol=1e-3)

        expected_scores, expected = fitted.ranker.rank(vectors[[3]], np.delete(vectors, 3, axis=0), k=10)
        scores, found = index.search_by_id(int(ids[3]), k=10)
        assert found[0].tolist() == np.delete(ids, 3)[expected[0]].tolist()
        np.testing.assert_allclose(scores[0], expected_scores[0], rtol=1e-4, atol=1e-5)


def test_the_refit_check_after_an_add_counts_changes_and_reads_every_image_only_near_the_limit(
    tmp_path: Path, sample_dir: Path, mobilenet: Embedder
) -> None:
    photos = copy_sample(
        sample_dir, tmp_path / "photos", labels=("dalmatian", "laptop", "pizza"), per_label=8
    )
    with Index.create(tmp_path / "photos.index", embedder=mobilenet) as index:
        index.sync(photos)
        vector_id = str(index.manifest["vector_id"])
        [summary] = list_fit_summaries(index.directory)
        assert summary.labels == {"dalmatian", "laptop", "pizza"} and summary.info.n_labelled == 24
        fitted = load_fit(index.directory, DEFAULT_METHOD)
        vectors = index.store.vectors([1, 2, 3])

        def upsert(name: str, label: str | None, vector: np.ndarray) -> None:
            index.store.upsert([ImageRecord(name, label, name, 1, 1, 1, 1)], vector[None, :])

        assert surely_current(summary, index.store, vector_id)
        upsert("a.jpg", None, vectors[0])  # 1 write: at most 2 changes, 10% of 24 labelled is 2.4
        assert surely_current(summary, index.store, vector_id)
        upsert("b.jpg", None, vectors[1])  # at most 4: read every image, which finds 2
        assert not surely_current(summary, index.store, vector_id)
        assert staleness(fitted, store_snapshot(index.store), vector_id) is None
        assert index.refit_stale() == []
        upsert("c.jpg", "new label", vectors[2])
        assert not surely_current(summary, index.store, vector_id)
        assert staleness(fitted, store_snapshot(index.store), vector_id) == "the set of labels changed"
        assert [refit.info.n_labels for refit in index.refit_stale()] == [4]
        [summary] = list_fit_summaries(index.directory)
        assert surely_current(summary, index.store, vector_id)
        upsert("c.jpg", "renamed", vectors[2])  # one write, and a label gone, another new
        assert not surely_current(summary, index.store, vector_id)


def test_fewer_than_two_labels_falls_back_to_an_unsupervised_method(
    tmp_path: Path, sample_dir: Path, mobilenet: Embedder
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted(sample_dir.glob("*/image_000[12].jpg")):  # 20 images directly in the folder
        shutil.copy2(path, photos / f"{path.parent.name}-{path.name}")
    with Index.create(tmp_path / "photos.index", embedder=mobilenet) as index:
        report = index.sync(photos)
        [fitted] = report.fitted
        assert fitted.info.fitted_method == UNSUPERVISED_FALLBACK
        assert "0 labels" in (fitted.info.note or "")
        _, ids = index.search_by_id(1, k=5)
        expected = index.search_by_id(1, k=5, method=UNSUPERVISED_FALLBACK)
        np.testing.assert_array_equal(ids, expected[1])


def test_unlabelled_folder_images_have_no_label_and_are_searched(
    tmp_path: Path, small_sample: Path, sample_dir: Path, mobilenet: Embedder
) -> None:
    (small_sample / "unlabelled").mkdir()
    shutil.copy2(sample_dir / "dalmatian" / "image_0007.jpg", small_sample / "unlabelled" / "dog.jpg")
    with Index.create(tmp_path / "photos.index", embedder=mobilenet) as index:
        index.sync(small_sample)
        ranking = index.ranking_info()
        assert (ranking["labelled_images"], ranking["unlabelled_images"]) == (12, 1)
        _, ids = index.search(sample_dir / "dalmatian" / "image_0007.jpg", k=1)
        [record] = index.records(ids[0])
        assert (record.path, record.label) == ("unlabelled/dog.jpg", None)
        _, unlabelled = index.search_by_id(1, k=5, labels=[None])
        assert [r.path for r in index.records(unlabelled[0])] == ["unlabelled/dog.jpg"]


def test_empty_index_searches_to_nothing(tmp_path: Path, mobilenet: Embedder) -> None:
    (tmp_path / "no-photos").mkdir()
    with Index.create(tmp_path / "empty.index", embedder=mobilenet) as index:
        assert index.sync(tmp_path / "no-photos").fitted == []
        for method in ("cosine", DEFAULT_METHOD):
            _, ids = index.search(np.ones((1, index.store.dim), dtype=np.float32), k=3, method=method)
            assert ids.tolist() == [[-1, -1, -1]]


def test_a_missing_fit_is_fitted_when_first_searched(
    tmp_path: Path, small_sample: Path, mobilenet: Embedder
) -> None:
    directory = tmp_path / "photos.index"
    with Index.create(directory, embedder=mobilenet) as index:
        index.sync(small_sample)
        expected = index.search_by_id(3, k=5, method="lda")
    shutil.rmtree(directory / "fits")
    with Index.open(directory, embedder=mobilenet) as reopened:
        found = reopened.search_by_id(3, k=5, method="lda")
    np.testing.assert_array_equal(found[1], expected[1])
    assert load_fit(directory, "lda") is not None


_SLOW_FIT = """
import sys, time
from imagerank import Index
index = Index.open(sys.argv[1])
print("fitting", flush=True)
index.fit("probe")
print("done", flush=True)
"""


def test_kill_during_a_fit_leaves_the_previous_fit_in_use(tmp_path: Path, mobilenet: Embedder) -> None:
    directory = tmp_path / "big.index"
    rng = np.random.default_rng(0)
    n, n_labels = 20_000, 40
    with Index.create(directory, embedder=mobilenet) as index:
        centres = rng.normal(size=(n_labels, index.store.dim))
        labels = rng.integers(0, n_labels, size=n)
        vectors = centres[labels] + 2.0 * rng.normal(size=(n, index.store.dim))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        records = [
            ImageRecord(
                path=f"{i}.jpg",
                label=f"label{labels[i]}",
                digest=str(i),
                size=1,
                mtime_ns=1,
                width=1,
                height=1,
            )
            for i in range(n)
        ]
        index.store.upsert(records, vectors.astype(np.float32))
        index.store.flush()
        before = index.fit("probe")
    saved = fit_path(directory, "probe")
    content = saved.read_bytes()

    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_FIT, str(directory)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "fitting"
    time.sleep(1.0)
    assert process.poll() is None, "the fit ended before it could be killed; make it slower"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    assert saved.read_bytes() == content
    with Index.open(directory) as reopened:
        assert reopened.fitted("probe").info.fitted_at == before.info.fitted_at


def test_cli_search_method_matches_the_library(
    cli: CliRunner, tmp_path: Path, small_sample: Path, mobilenet: Embedder
) -> None:
    directory = tmp_path / "photos.index"
    indexed = cli("index", small_sample, "--index", directory, "--quiet")
    assert indexed.returncode == 0, indexed.stderr
    assert f"ranking: {DEFAULT_METHOD} fitted on 12 labelled images (3 labels) of 12" in indexed.stderr

    for method in (None, "kreciprocal"):
        args = ["search", "--id", "4", "--index", directory, "-k", "5", "--json"]
        result = cli(*args, *(["--method", method] if method else []))
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        with Index.open(directory, embedder=mobilenet) as index:
            _, ids = index.search_by_id(4, k=5, method=method)
        assert [row["id"] for row in document["results"]] == ids[0].tolist()
        assert document["method"] == (method or DEFAULT_METHOD)

    info = cli("info", "--index", directory)
    assert f"default {DEFAULT_METHOD}; 12 labelled images (3 labels), 0 unlabelled" in info.stdout
    assert "current" in info.stdout


def test_cli_unknown_method_is_a_usage_error(cli: CliRunner, sample_index: Index) -> None:
    result = cli("search", "--id", "1", "--index", sample_index.directory, "--method", "magic")
    assert result.returncode == 2
    assert "unknown ranking method 'magic'" in result.stderr
    assert "kreciprocal" in result.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mobilenet: Embedder):
    with sample_server(tmp_path_factory, "learned-api", mobilenet) as running:
        yield running


def test_api_search_method_matches_the_library(served: Served, mobilenet: Embedder) -> None:
    with Index.open(served.index_dir, embedder=mobilenet) as index:
        expected = {method: index.search_by_id(9, k=6, method=method)[1][0].tolist() for method in METHODS}
    for method, ids in expected.items():
        response = httpx.post(
            f"{served.url}/api/search", json={"id": 9, "k": 6, "method": method}, timeout=60
        )
        assert response.status_code == 200, response.text
        assert [row["id"] for row in response.json()["results"]] == ids
        assert response.json()["method"] == method
    default = httpx.post(f"{served.url}/api/search", json={"id": 9, "k": 6}, timeout=60).json()
    assert default["method"] == DEFAULT_METHOD
    assert [row["id"] for row in default["results"]] == expected[DEFAULT_METHOD]


def test_api_unknown_method_is_a_422_listing_the_methods(served: Served) -> None:
    response = httpx.post(f"{served.url}/api/search", json={"id": 1, "method": "nope"}, timeout=30)
    assert response.status_code == 422
    assert "rankers: random, cosine" in response.json()["detail"]
    with (served.images / "pizza" / "image_0001.jpg").open("rb") as image:
        upload = httpx.post(
            f"{served.url}/api/search", files={"image": image}, data={"method": "nope"}, timeout=30
        )
    assert upload.status_code == 422


def test_api_lists_methods_and_the_fit(served: Served) -> None:
    methods = httpx.get(f"{served.url}/api/methods", timeout=30).json()
    assert methods["default"] == DEFAULT_METHOD == methods["suggested"][0]
    assert "kreciprocal" in methods["rerankers"] and "probe" in methods["rankers"]
    assert (methods["labelled_images"], methods["labels"]) == (80, 10)
    [fit] = [fit for fit in methods["fits"] if fit["method"] == DEFAULT_METHOD]
    assert fit["n_labelled"] == 80 and not fit["stale"]
