import functools
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from imagerank.embedding.embedder import EmbeddedBatch
from imagerank.embedding.models import BackboneSpec
from imagerank.errors import BadImageError
from imagerank.evaluation import metrics
from imagerank.evaluation.embeddings import cached_embeddings, dataset_embeddings, joined_embeddings
from imagerank.evaluation.evaluate import evaluate_protocol, evaluate_split
from imagerank.evaluation.protocols import SEED_PROTOCOL, Protocol, Split, list_labelled_images
from imagerank.ranking import (
    CosineRanker,
    LDARanker,
    ProbeRanker,
    get_method,
    list_methods,
    normalized,
)

CALTECH = Path(__file__).resolve().parents[1] / "../shared/datasets/caltech101/101_ObjectCategories"
needs_caltech = pytest.mark.skipif(not CALTECH.is_dir(), reason="Caltech-101 is not present")
FEATURES = os.environ.get("IMAGERANK_CALTECH_FEATURES")
"""Optional folder of ``<backbone>.npz`` (paths, labels, vectors) to skip embedding Caltech-101 while
developing."""
EVERY_METHOD = [*list_methods(), "probe+qe"]
BACKBONES = ["mobilenet_v2", "efficientnet_lite0"]
JOINED = "+".join(BACKBONES)


def clustered(n_labels=10, per_label=40, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_labels, dim))
    labels = np.repeat([f"label{i}" for i in range(n_labels)], per_label)
    vectors = centres[np.repeat(np.arange(n_labels), per_label)] + 0.9 * rng.normal(size=(labels.size, dim))
    return normalized(vectors), labels


def test_result_holds_every_metric_and_matches_direct_computation():
    vectors, labels = clustered()
    result = evaluate_protocol(vectors, labels, SEED_PROTOCOL, ["cosine", "random"], k=10)
    split = SEED_PROTOCOL.split(labels)
    scores = normalized(vectors[split.queries]) @ normalized(vectors[split.candidates]).T
    relevant = metrics.relevance_matrix(
        np.argsort(-scores, axis=1, kind="stable"), labels[split.candidates], labels[split.queries]
    )
    flat = result.to_dict()
    assert flat["cosine_p@10"] == pytest.approx(metrics.precision_at_k(relevant, 10).mean())
    assert flat["cosine_ap@10"] == pytest.approx(metrics.ap_at_k(relevant, 10).mean())
    assert flat["cosine_map"] == pytest.approx(metrics.average_precision(relevant, np.full(50, 15)).mean())
    assert flat["cosine_precision_curve"][9] == pytest.approx(flat["cosine_p@10"])
    assert len(flat["random_recall_curve"]) == 50
    low, high = flat["cosine_p@10_ci95"]
    assert low <= flat["cosine_p@10"] <= high
    assert (flat["n_train"], flat["n_candidates"], flat["n_queries"]) == (200, 150, 50)
    assert json.loads(result.to_json())["random_ndcg@10"] == pytest.approx(flat["random_ndcg@10"])


def test_table_has_one_row_per_method_and_metric():
    vectors, labels = clustered()
    result = evaluate_protocol(vectors, labels, SEED_PROTOCOL, ["cosine", "qe"], k=5)
    rows = result.table()
    assert [(row["method"], row["metric"]) for row in rows[:5]] == [
        ("cosine", name) for name in ["p@5", "ap@5", "map", "recall@5", "ndcg@5"]
    ]
    assert len(rows) == 10
    assert all(row["low"] <= row["mean"] <= row["high"] for row in rows)


def test_methods_are_fitted_on_training_labels_only():
    vectors, labels = clustered()
    split = SEED_PROTOCOL.split(labels)
    seen = {}

    class Recording(CosineRanker):
        def fit(self, train_vectors, train_labels, unlabelled_vectors=None):
            seen.update(train=train_vectors, labels=train_labels, unlabelled=unlabelled_vectors)
            return self

    evaluate_split(vectors, labels, split, {"recording": Recording()})
    np.testing.assert_array_equal(seen["labels"], labels[split.train])
    np.testing.assert_array_equal(seen["train"], vectors[split.train])
    pool = vectors[np.concatenate([split.candidates, split.queries])]
    np.testing.assert_array_equal(seen["unlabelled"], pool)


def test_permuting_candidate_and_query_labels_leaves_every_ranking_unchanged():
    vectors, labels = clustered(seed=1)
    split = SEED_PROTOCOL.split(labels)
    hidden = np.concatenate([split.candidates, split.queries])
    permuted = labels.copy()
    permuted[hidden] = labels[np.random.default_rng(2).permutation(hidden)]
    assert (permuted[hidden] != labels[hidden]).mean() > 0.5
    rankers = {name: get_method(name) for name in EVERY_METHOD}
    before = evaluate_split(vectors, labels, split, rankers)
    after = evaluate_split(vectors, permuted, split, {name: get_method(name) for name in EVERY_METHOD})
    for name in EVERY_METHOD:
        np.testing.assert_array_equal(before.methods[name].ranked_ids, after.methods[name].ranked_ids)


def test_evaluate_protocol_rejects_mismatched_inputs():
    vectors, labels = clustered()
    with pytest.raises(ValueError, match="vectors but"):
        evaluate_protocol(vectors[:-1], labels, SEED_PROTOCOL, ["cosine"])


def test_joined_embeddings_have_unit_rows_whose_cosine_is_the_mean_of_the_parts_cosines():
    rng = np.random.default_rng(3)
    first, second = rng.normal(size=(6, 5)), 10 * rng.normal(size=(6, 3))
    joined = joined_embeddings([first, second])
    assert joined.shape == (6, 8)
    np.testing.assert_allclose(np.linalg.norm(joined, axis=1), 1.0, rtol=1e-6)
    mean_cosine = (normalized(first) @ normalized(first).T + normalized(second) @ normalized(second).T) / 2
    np.testing.assert_allclose(joined @ joined.T, mean_cosine, atol=1e-6)


@pytest.mark.parametrize(
    "model", ["mobilenet_v2+", "+efficientnet_lite0", "mobilenet_v2++efficientnet_lite0"]
)
def test_dataset_embeddings_reject_an_empty_backbone_name_before_embedding(model, tmp_path):
    with pytest.raises(ValueError, match="empty backbone name"):
        dataset_embeddings([tmp_path / "never-read.jpg"], model)


@needs_caltech
def test_random_baseline_reproduces_the_published_numbers_on_caltech():
    _, labels = list_labelled_images(CALTECH)
    vectors = np.zeros((labels.size, 4), np.float32)  # random never looks at them
    flat = evaluate_protocol(vectors, labels, SEED_PROTOCOL, ["random"]).to_dict()
    assert round(flat["random_p@10"], 5) == 0.00882
    assert round(flat["random_ap@10"], 5) == 0.00318


@functools.cache
def caltech_vectors(model: str) -> tuple[np.ndarray, np.ndarray]:
    """Vectors of all 9,144 seed-protocol images for ``model`` (backbones joined by ``+``), through the
    real pipeline and its cache, or from ``IMAGERANK_CALTECH_FEATURES``."""
    listed, listed_labels = list_labelled_images(CALTECH)
    if not FEATURES:
        return dataset_embeddings(listed, model), listed_labels
    parts = []
    for backbone in model.split("+"):
        with np.load(Path(FEATURES) / f"{backbone}.npz") as stored:
            assert stored["paths"].tolist() == [p.relative_to(CALTECH).as_posix() for p in listed]
            parts.append(stored["vectors"])
    return joined_embeddings(parts), listed_labels


@pytest.fixture(scope="module", params=[*BACKBONES, JOINED])
def caltech_features(request):
    return caltech_vectors(request.param)


@needs_caltech
def test_caltech_seed_protocol_numbers(caltech_features):
    vectors, labels = caltech_features
    start = time.perf_counter()
    result = evaluate_protocol(vectors, labels, SEED_PROTOCOL, EVERY_METHOD)
    print(f"\nall {len(EVERY_METHOD)} methods in {time.perf_counter() - start:.1f}s")
    flat = result.to_dict()
    assert abs(flat["cosine_p@10"] - 0.6947) < 0.05
    # measured: 0.892 / 0.880 on MobileNetV2 features, 0.886 / 0.877 on EfficientNet-Lite0's, 0.905 / 0.900
    # on both joined
    assert flat["probe+qe_p@10"] > 0.875 and flat["probe+qe_ap@10"] > 0.865
    for name in ["lda", "probe", "propagation", "qe", "dba", "kreciprocal", "probe+qe"]:
        assert flat[f"{name}_p@10"] > flat["cosine_p@10"], name


@needs_caltech
def test_caltech_joined_backbones_reach_the_issue_target():
    """Each backbone's probe classifies about 91.5% of queries right; joined, about 93%."""
    vectors, labels = caltech_vectors(JOINED)
    flat = evaluate_protocol(vectors, labels, SEED_PROTOCOL, ["cosine", "probe+qe"]).to_dict()
    assert flat["probe+qe_p@10"] >= 0.90 and flat["probe+qe_ap@10"] >= 0.86
    single = caltech_vectors(BACKBONES[0])
    alone = evaluate_protocol(*single, SEED_PROTOCOL, ["probe+qe"]).to_dict()
    assert flat["probe+qe_p@10"] > alone["probe+qe_p@10"]


@needs_caltech
@pytest.mark.parametrize("method", ["lda", "probe", "probe+qe", "propagation", "qe", "kreciprocal", "hybrid"])
def test_caltech_categories_absent_from_training_rank_no_worse_than_cosine(caltech_features, method, request):
    if method == "propagation" and request.node.callspec.params["caltech_features"] == JOINED:
        request.applymarker(
            pytest.mark.xfail(
                strict=True,
                reason="known limitation: on joined backbones the spread labels reach unseen categories "
                "and propagation falls 0.023 below cosine (0.765 against 0.789)",
            )
        )
    vectors, labels = caltech_features
    unseen = tuple(np.unique(labels)[1::4].tolist())  # 26 of the 102 categories
    protocol = Protocol(name="unseen-categories", unseen_labels=unseen)
    split = protocol.split(labels)
    result = evaluate_split(vectors, labels, split, {"cosine": CosineRanker(), method: get_method(method)})
    on_unseen = np.isin(labels[split.queries], unseen)
    cosine = result.methods["cosine"].per_query["p@10"][on_unseen].mean()
    # 0.02 is under a standard error of P@10 over these 130 queries (about 0.03)
    assert result.methods[method].per_query["p@10"][on_unseen].mean() >= cosine - 0.02


@needs_caltech
@pytest.mark.parametrize("ranker", [ProbeRanker, LDARanker])
def test_caltech_fallback_alone_beats_cosine_on_categories_absent_from_training(caltech_features, ranker):
    """A novelty gate can open early only because its fallback beats cosine on new categories."""
    vectors, labels = caltech_features
    unseen = tuple(np.unique(labels)[1::4].tolist())
    split = Protocol(name="unseen-categories", unseen_labels=unseen).split(labels)
    fallback_only = ranker(novelty_threshold=2.0)  # confidence never exceeds 1: the gate stays shut
    result = evaluate_split(vectors, labels, split, {"cosine": CosineRanker(), "fallback": fallback_only})
    on_unseen = np.isin(labels[split.queries], unseen)
    cosine = result.methods["cosine"].per_query["p@10"][on_unseen].mean()
    # measured on MobileNetV2, EfficientNet-Lite0 and joined features: cosine 0.750 / 0.724 / 0.789,
    # probe fallback 0.815 / 0.794 / 0.855, LDA fallback 0.775 / 0.762 / 0.829
    assert result.methods["fallback"].per_query["p@10"][on_unseen].mean() > cosine + 0.02


def unseen_half(labels: np.ndarray, seed: int) -> Split:
    """The seed split with a random half of the categories left out of training; queries and candidates
    only from that half (``benchmarks/ranking_protocols.py`` prints more of these)."""
    unseen = np.random.RandomState(seed).choice(np.unique(labels), len(np.unique(labels)) // 2, replace=False)
    split = Protocol(name="unseen-half", unseen_labels=tuple(unseen.tolist())).split(labels)
    return Split(
        train=split.train,
        candidates=split.candidates[np.isin(labels[split.candidates], unseen)],
        queries=split.queries[np.isin(labels[split.queries], unseen)],
    )


@needs_caltech
@pytest.mark.parametrize("model", [BACKBONES[0], JOINED])
def test_caltech_hybrid_ranks_like_the_probe_on_labelled_categories_and_beats_cosine_on_unlabelled(model):
    """The default method: measured seed 0.894 / 0.921 (probe+qe 0.892 / 0.905) on MobileNetV2 / joined;
    on the unseen half of seed 100: 0.857 / 0.866, where cosine has 0.753 / 0.790 and dba+kreciprocal
    0.860 / 0.871."""
    vectors, labels = caltech_vectors(model)
    seed = evaluate_protocol(vectors, labels, SEED_PROTOCOL, ["probe+qe", "hybrid"]).to_dict()
    assert seed["hybrid_p@10"] > seed["probe+qe_p@10"]
    rankers = {name: get_method(name) for name in ["cosine", "dba+kreciprocal", "hybrid"]}
    unseen = evaluate_split(vectors, labels, unseen_half(labels, 100), rankers)
    p10 = {name: scores.mean("p@10") for name, scores in unseen.methods.items()}
    assert p10["hybrid"] > p10["cosine"] + 0.05
    # 0.02 is under a standard error of P@10 over these 255 queries (about 0.02)
    assert p10["hybrid"] >= p10["dba+kreciprocal"] - 0.02


class CountingEmbedder:
    """A deterministic stand-in for imagerank.embedding.embedder's embedders: vectors from file bytes."""

    def __init__(self, weights_id="w1"):
        self.spec = BackboneSpec(name="fake/model", dim=8, weights_id=weights_id)
        self.embedded = []

    def encode(self, paths, batch_size=64, show_progress_bar=False):
        self.embedded.extend(Path(p).name for p in paths)
        rows = [np.frombuffer(Path(p).read_bytes().ljust(8, b"\0")[:8], np.uint8) for p in paths]
        return normalized(np.array(rows, np.float32) + 1)

    def iter_encode_files(self, paths, batch_size=64, show_progress_bar=False):
        """Like the real embedders: files starting with b"bad" are returned as errors, not raised."""
        good = [Path(p) for p in paths if not Path(p).read_bytes().startswith(b"bad")]
        errors = [BadImageError(p, "truncated or corrupt image data") for p in paths if Path(p) not in good]
        vectors = self.encode(good) if good else np.zeros((0, self.spec.dim), np.float32)
        yield EmbeddedBatch(good, vectors, errors)


def write_files(folder, contents):
    folder.mkdir(exist_ok=True)
    paths = []
    for name, data in contents.items():
        (folder / name).write_bytes(data)
        paths.append(folder / name)
    return paths


def test_cached_embeddings_embed_each_content_once(tmp_path):
    paths = write_files(tmp_path / "images", {"a.jpg": b"alpha", "b.jpg": b"bravo", "c.jpg": b"alpha"})
    embedder = CountingEmbedder()
    first = cached_embeddings(paths, embedder, tmp_path / "cache")
    assert len(embedder.embedded) == 2 and "b.jpg" in embedder.embedded  # c.jpg has a.jpg's content
    np.testing.assert_array_equal(first, embedder.encode(paths))

    embedder.embedded.clear()
    again = cached_embeddings(list(reversed(paths)), embedder, tmp_path / "cache")
    assert embedder.embedded == []
    np.testing.assert_array_equal(again, first[::-1])


def test_cached_embeddings_re_embed_edited_files_and_keep_models_apart(tmp_path):
    paths = write_files(tmp_path / "images", {"a.jpg": b"alpha", "b.jpg": b"bravo"})
    cached_embeddings(paths, CountingEmbedder(), tmp_path / "cache")
    paths[1].write_bytes(b"charlie")
    embedder = CountingEmbedder()
    cached_embeddings(paths, embedder, tmp_path / "cache")
    assert embedder.embedded == ["b.jpg"]

    other_weights = CountingEmbedder(weights_id="w2")
    cached_embeddings(paths, other_weights, tmp_path / "cache")
    assert sorted(other_weights.embedded) == ["a.jpg", "b.jpg"]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_cached_embeddings_raise_on_a_bad_file_after_caching_the_good_ones(tmp_path):
    paths = write_files(tmp_path / "images", {"a.jpg": b"alpha", "b.jpg": b"bad data", "c.jpg": b"charlie"})
    with pytest.raises(BadImageError, match=r"b\.jpg"):
        cached_embeddings(paths, CountingEmbedder(), tmp_path / "cache")
    embedder = CountingEmbedder()
    vectors = cached_embeddings([paths[0], paths[2]], embedder, tmp_path / "cache")
    assert embedder.embedded == [] and vectors.shape == (2, 8)
