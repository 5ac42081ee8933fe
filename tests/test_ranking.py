import numpy as np
import pytest

from imagerank.evaluation.metrics import precision_at_k, relevance_matrix
from imagerank.evaluation.protocols import Protocol
from imagerank.ranking import (
    CosineRanker,
    DatabaseAugmentation,
    HybridRanker,
    KReciprocal,
    NotFittedError,
    ProbeRanker,
    QueryExpansion,
    RandomRanker,
    get_method,
    learned,
    list_methods,
    normalized,
    refine,
    rocchio_query,
    top_k,
)
from imagerank.ranking._base import sharpened_posteriors
from imagerank.ranking.hybrid import reference_rows, scaled_per_row
from imagerank.ranking.rerank import _min_overlap

ALL_METHODS = [*list_methods(), "probe+qe", "lda+kreciprocal", "probe+dba+qe"]


def clustered(n_labels=12, per_label=40, dim=24, informative=6, noise=1.4, seed=0):
    """Labelled Gaussian clusters whose label only shows in the first ``informative`` dimensions.

    Cosine sees the label through heavy noise; a method that learns which dimensions matter does better.
    """
    rng = np.random.default_rng(seed)
    centres = np.zeros((n_labels, dim))
    centres[:, :informative] = rng.normal(size=(n_labels, informative))
    labels = np.repeat([f"label{i:02d}" for i in range(n_labels)], per_label)
    index = np.repeat(np.arange(n_labels), per_label)
    vectors = centres[index] + noise * rng.normal(size=(labels.size, dim)) / np.sqrt(dim / informative)
    order = rng.permutation(labels.size)
    return normalized(vectors[order] + 0.5 * rng.normal(size=dim)), labels[order]


def gate_inputs(ranker, queries, candidates):
    """What `HybridRanker.gate` takes, computed as its `score` computes it."""
    queries, candidates = normalized(queries), normalized(candidates)
    return queries, ranker.logits(queries), ranker.logits(candidates), queries @ candidates.T


def fitted_rankings(method, vectors, labels, protocol):
    split = protocol.split(labels)
    unlabelled = vectors[np.concatenate([split.candidates, split.queries])]
    ranker = get_method(method).fit(vectors[split.train], labels[split.train], unlabelled)
    _, ids = ranker.rank(vectors[split.queries], vectors[split.candidates])
    return split, ids


def mean_precision(ids, split, labels, k=10, only=None):
    relevant = relevance_matrix(ids, labels[split.candidates], labels[split.queries])
    if only is not None:
        relevant = relevant[np.isin(labels[split.queries], only)]
    return precision_at_k(relevant, k).mean()


SYNTHETIC = Protocol(name="synthetic")


def test_random_reproduces_the_reference_draw_of_candidate_labels():
    vectors, labels = clustered()
    split = SYNTHETIC.split(labels)
    candidate_labels, query_labels = labels[split.candidates], labels[split.queries]
    _, ids = RandomRanker().rank(vectors[split.queries], vectors[split.candidates], k=10)
    rng = np.random.RandomState(2021)
    for ranked in ids:
        assert candidate_labels[ranked].tolist() == rng.choice(candidate_labels, 10, replace=False).tolist()
    assert query_labels.size == ids.shape[0]


def test_random_top_k_does_not_depend_on_k():
    vectors, _ = clustered()
    _, top_ten = RandomRanker(seed=5).rank(vectors[:7], vectors[7:], k=10)
    _, everything = RandomRanker(seed=5).rank(vectors[:7], vectors[7:])
    np.testing.assert_array_equal(everything[:, :10], top_ten)
    assert sorted(everything[0].tolist()) == list(range(len(vectors) - 7))


def test_cosine_matches_a_brute_force_faiss_search():
    import faiss

    vectors, _ = clustered(seed=1)
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors[100:])
    expected_scores, expected_ids = index.search(vectors[:100], 15)
    scores, ids = CosineRanker().rank(vectors[:100], vectors[100:], k=15)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5)
    np.testing.assert_array_equal(ids, expected_ids)


def test_top_k_breaks_ties_by_lower_id():
    scores, ids = top_k(np.array([[0.5, 0.9, 0.5, 0.9, 0.1]]), k=4)
    assert ids.tolist() == [[1, 3, 0, 2]]
    assert scores.tolist() == [[0.9, 0.9, 0.5, 0.5]]


def test_query_expansion_equals_cosine_to_the_expanded_query():
    vectors, _ = clustered(seed=2)
    queries, candidates = vectors[:20], vectors[20:]
    reranked = QueryExpansion(n_neighbours=4, alpha=3.0).fit(vectors, np.arange(len(vectors)) % 2)
    cosine = queries @ candidates.T
    best = np.argsort(-cosine, axis=1)[:, :4]
    weights = np.take_along_axis(cosine, best, axis=1) ** 3
    expanded = queries + np.einsum("qn,qnd->qd", weights, candidates[best])
    np.testing.assert_allclose(reranked.score(queries, candidates), expanded @ candidates.T, atol=1e-5)


def test_database_augmentation_equals_cosine_to_the_augmented_candidates():
    vectors, _ = clustered(seed=3)
    queries, candidates = vectors[:20], vectors[20:]
    reranked = DatabaseAugmentation(n_neighbours=3, alpha=3.0).fit(vectors, np.arange(len(vectors)) % 2)
    among = candidates @ candidates.T
    best = np.argsort(-among, axis=1)[:, :3]
    weights = np.take_along_axis(among, best, axis=1) ** 3
    augmented = normalized(np.einsum("cn,cnd->cd", weights, candidates[best]))
    np.testing.assert_allclose(reranked.score(queries, candidates), queries @ augmented.T, atol=1e-5)


def test_min_overlap_matches_a_dense_computation():
    import scipy.sparse as sp

    a = sp.random(7, 30, density=0.3, random_state=5, format="csr")
    b = sp.random(11, 30, density=0.3, random_state=6, format="csr")
    dense = np.minimum(a.toarray()[:, None, :], b.toarray()[None, :, :]).sum(axis=2)
    np.testing.assert_allclose(_min_overlap(a, b), dense)


def test_k_reciprocal_improves_on_cosine_for_clustered_data():
    vectors, labels = clustered(seed=6)
    split, cosine_ids = fitted_rankings("cosine", vectors, labels, SYNTHETIC)
    _, reranked_ids = fitted_rankings("kreciprocal", vectors, labels, SYNTHETIC)
    assert mean_precision(reranked_ids, split, labels) > mean_precision(cosine_ids, split, labels)


@pytest.mark.parametrize("method", ["lda", "probe", "propagation", "probe+qe", "hybrid"])
def test_learned_methods_beat_cosine_when_labels_say_which_dimensions_matter(method):
    vectors, labels = clustered(seed=7, noise=0.9)
    split, cosine_ids = fitted_rankings("cosine", vectors, labels, SYNTHETIC)
    _, learned_ids = fitted_rankings(method, vectors, labels, SYNTHETIC)
    assert mean_precision(learned_ids, split, labels) > mean_precision(cosine_ids, split, labels) + 0.05


PROBE_ON_UNSEEN_SYNTHETIC = pytest.mark.xfail(
    strict=True,
    reason="known limitation: on these 12-label clusters the probe's novelty gate lets some "
    "unseen-category queries through (it holds on Caltech-101, see test_evaluation)",
)


@pytest.mark.parametrize(
    "method",
    [
        pytest.param(name, marks=PROBE_ON_UNSEEN_SYNTHETIC) if name.startswith("probe") else name
        for name in ALL_METHODS
        if name != "random"
    ],
)
def test_methods_do_no_worse_than_cosine_on_categories_absent_from_training(method):
    vectors, labels = clustered(n_labels=16, seed=8, noise=0.9)
    unseen = tuple(np.unique(labels)[::4].tolist())
    protocol = Protocol(name="unseen", unseen_labels=unseen)
    split, cosine_ids = fitted_rankings("cosine", vectors, labels, protocol)
    _, ids = fitted_rankings(method, vectors, labels, protocol)
    cosine = mean_precision(cosine_ids, split, labels, only=unseen)
    assert mean_precision(ids, split, labels, only=unseen) >= cosine - 0.02


@pytest.mark.parametrize("method", ALL_METHODS)
def test_rank_returns_faiss_shaped_results_best_first(method):
    vectors, labels = clustered(seed=9)
    split = SYNTHETIC.split(labels)
    ranker = get_method(method).fit(vectors[split.train], labels[split.train])
    scores, ids = ranker.rank(vectors[split.queries], vectors[split.candidates], k=7)
    assert scores.shape == ids.shape == (len(split.queries), 7)
    assert (np.diff(scores, axis=1) <= 0).all()
    assert ((ids >= 0) & (ids < len(split.candidates))).all()
    assert all(np.unique(row).size == 7 for row in ids)


@pytest.mark.parametrize("method", ["lda", "probe", "propagation", "probe+qe", "hybrid"])
def test_learned_methods_refuse_to_rank_before_fit(method):
    vectors, _ = clustered()
    with pytest.raises(NotFittedError):
        get_method(method).rank(vectors[:3], vectors[3:])


def test_hybrid_is_dba_kreciprocal_with_its_gate_shut_and_the_probe_with_it_open():
    vectors, labels = clustered(seed=11)
    split = SYNTHETIC.split(labels)
    train, queries, candidates = vectors[split.train], vectors[split.queries], vectors[split.candidates]
    unlabelled = vectors[np.concatenate([split.candidates, split.queries])]

    def ranked(ranker):
        return ranker.fit(train, labels[split.train], unlabelled).rank(queries, candidates)[1]

    # confidence never exceeds 1; without the cosine tie-break the blend is the fallback alone
    shut = ranked(HybridRanker(novelty_threshold=2.0, novelty_slope=1e3, similarity_weight=0.0))
    np.testing.assert_array_equal(shut, ranked(get_method("dba+kreciprocal")))
    opened = HybridRanker(novelty_threshold=-1.0, novelty_slope=1e3, similarity_weight=0.0)
    opened.fit(train, labels[split.train], unlabelled)
    posteriors = [sharpened_posteriors(opened.logits(v), opened.sharpness) for v in (queries, candidates)]
    same_label = posteriors[0] @ posteriors[1].T
    np.testing.assert_array_equal(opened.rank(queries, candidates)[1], top_k(same_label)[1])


def test_hybrid_with_a_fallback_depth_ranks_each_query_alone_within_its_shortlist():
    vectors, labels = clustered(seed=13)
    split = SYNTHETIC.split(labels)
    train, queries, candidates = vectors[split.train], vectors[split.queries], vectors[split.candidates]
    batch = HybridRanker().fit(train, labels[split.train])
    deep = HybridRanker(fallback_depth=len(candidates)).fit(train, labels[split.train])
    # one query with every candidate in its shortlist: the same scores as the batch computation
    np.testing.assert_allclose(deep.score(queries[:1], candidates), batch.score(queries[:1], candidates))
    # each query's ranking is independent of the other queries in its batch
    together = deep.score(queries[:4], candidates)
    alone = np.concatenate([deep.score(queries[i : i + 1], candidates) for i in range(4)])
    np.testing.assert_allclose(together, alone, rtol=1e-6, atol=1e-7)  # float32 products, batched or not
    # with the gate shut, the shortlist is ranked first, in dba+kreciprocal's order over it alone
    shut = HybridRanker(novelty_threshold=2.0, novelty_slope=1e3, similarity_weight=0.0, fallback_depth=30)
    _, ids = shut.fit(train, labels[split.train]).rank(queries[:1], candidates)
    shortlist = top_k(queries[:1] @ candidates.T, 30)[1][0]
    _, expected = (
        get_method("dba+kreciprocal").fit(train, labels[split.train]).rank(queries[:1], candidates[shortlist])
    )
    np.testing.assert_array_equal(ids[0, :29], shortlist[expected[0, :29]])


@pytest.mark.parametrize("fallback_depth", [None, 30])
def test_hybrid_scores_a_query_with_a_fully_open_gate_by_the_probe_alone(fallback_depth):
    vectors, labels = clustered(n_labels=16, seed=12, noise=0.5)
    unseen = np.unique(labels)[::2]
    split = Protocol(name="half", unseen_labels=tuple(unseen.tolist())).split(labels)
    unlabelled = vectors[np.concatenate([split.candidates, split.queries])]
    queries, candidates = vectors[split.queries], vectors[split.candidates]
    # no prior from the collection (its half-covered pool reads as mostly uncovered here and shuts most
    # gates), and a threshold that opens some gates fully on these clusters
    settings = {"similarity_weight": 0.0, "prior_weight": 0.0, "novelty_threshold": 0.3}
    ranker = HybridRanker(fallback_depth=fallback_depth, **settings)
    ranker.fit(vectors[split.train], labels[split.train], unlabelled)
    gate = ranker.gate(*gate_inputs(ranker, queries, candidates)).ravel()
    opened, partly = np.flatnonzero(gate == 1.0), np.flatnonzero((gate > 0.05) & (gate < 1.0))
    assert len(opened) and len(partly)  # both kinds of query are in this split
    posteriors = [sharpened_posteriors(ranker.logits(v), ranker.sharpness) for v in (queries, candidates)]
    learned = posteriors[0] @ posteriors[1].T
    scores = ranker.score(queries, candidates)
    np.testing.assert_allclose(scores[opened], scaled_per_row(learned[opened]), atol=1e-12)
    # where the gate is not fully open the fallback still counts
    assert not np.allclose(scores[partly], gate[partly, None] * scaled_per_row(learned[partly]))
    # a gate that never counts as open scores the confident queries almost the same
    never = HybridRanker(fallback_depth=fallback_depth, open_gate=2.0, **settings)
    never.fit(vectors[split.train], labels[split.train], unlabelled)
    np.testing.assert_allclose(never.score(queries[opened], candidates), scores[opened], atol=0.011)


@pytest.mark.parametrize("fallback_depth", [None, 5])
def test_hybrid_scores_empty_query_and_candidate_sets_and_two_labels(fallback_depth):
    vectors, labels = clustered(n_labels=2, seed=14)
    ranker = HybridRanker(fallback_depth=fallback_depth).fit(vectors[:40], labels[:40], vectors[40:])
    assert ranker.score(vectors[40:43], vectors[:0]).shape == (3, 0)
    assert ranker.score(vectors[:0], vectors[40:50]).shape == (0, 10)
    _, ids = ranker.rank(vectors[40:42], vectors[42:60], k=3)
    assert ids.shape == (2, 3)


def test_hybrid_gate_follows_the_probe_s_confidence_in_the_query_s_neighbourhood():
    vectors, labels = clustered(n_labels=16, seed=12, noise=0.5)
    unseen = np.unique(labels)[::2]
    split = Protocol(name="half", unseen_labels=tuple(unseen.tolist())).split(labels)
    unlabelled = vectors[np.concatenate([split.candidates, split.queries])]
    ranker = HybridRanker(prior_weight=0.0, novelty_threshold=0.3)  # the neighbourhood's evidence alone
    ranker.fit(vectors[split.train], labels[split.train], unlabelled)
    queries, candidates = vectors[split.queries], vectors[split.candidates]
    gate = ranker.gate(*gate_inputs(ranker, queries, candidates)).ravel()
    on_unseen = np.isin(labels[split.queries], unseen)
    assert gate[~on_unseen].mean() > gate[on_unseen].mean() + 0.4


def test_hybrid_gate_opens_wider_in_a_collection_the_labels_cover_and_narrower_in_one_they_do_not():
    vectors, labels = clustered(n_labels=16, seed=12, noise=0.2)
    unseen = np.unique(labels)[::2]
    split = Protocol(name="half", unseen_labels=tuple(unseen.tolist())).split(labels)
    pool = np.concatenate([split.candidates, split.queries])
    known_pool, unseen_pool = pool[~np.isin(labels[pool], unseen)], pool[np.isin(labels[pool], unseen)]
    train, train_labels = vectors[split.train], labels[split.train]
    covered = HybridRanker().fit(train, train_labels, vectors[known_pool])
    uncovered = HybridRanker().fit(train, train_labels, vectors[unseen_pool])
    assert covered.known_fraction_ > 0.55 > 0.1 > uncovered.known_fraction_
    assert HybridRanker().fit(train, train_labels).known_fraction_ == 0.5  # no unlabelled image: no evidence
    queries, candidates = vectors[split.queries], vectors[split.candidates]

    def gates(ranker):
        inputs = gate_inputs(ranker, queries, candidates)
        with_prior = ranker.gate(*inputs).ravel()
        ranker.prior_weight = 0.0
        return with_prior, ranker.gate(*inputs).ravel()

    for ranker, wider in ((covered, True), (uncovered, False)):
        with_prior, without = gates(ranker)
        partly = (without > 0.01) & (without < 0.99)
        assert partly.sum() >= 5
        assert ((with_prior[partly] > without[partly]) == wider).all()


def test_hybrid_gate_shuts_for_queries_nearer_the_collection_than_any_labelled_image():
    vectors, labels = clustered(n_labels=16, seed=12, noise=0.5)
    unseen = np.unique(labels)[::2]
    split = Protocol(name="half", unseen_labels=tuple(unseen.tolist())).split(labels)
    unlabelled = vectors[np.concatenate([split.candidates, split.queries])]
    queries, candidates = vectors[split.queries], vectors[split.candidates]
    ranker = HybridRanker(prior_weight=0.0, novelty_threshold=0.3)
    ranker.fit(vectors[split.train], labels[split.train], unlabelled)
    on_unseen = np.isin(labels[split.queries], unseen)
    inputs = gate_inputs(ranker, queries, candidates)
    nearer = ranker.nearer_than_labels(inputs[0], inputs[3])
    assert ranker.unlabelled_per_reference_ == len(unlabelled) / len(ranker.references_) == 2.0
    assert np.median(nearer[on_unseen]) >= 10 > 2 > np.median(nearer[~on_unseen])  # 15.5 against 0
    with_references = ranker.gate(*inputs).ravel()
    ranker.reference_weight = 0.0
    without = ranker.gate(*inputs).ravel()
    assert with_references[on_unseen].mean() < 0.5 * without[on_unseen].mean()  # 0.008 against 0.072
    assert with_references[~on_unseen].mean() > without[~on_unseen].mean() + 0.1  # 0.75 against 0.48
    # in a collection with more unlabelled images per labelled one, more of them are expected to be nearer
    ranker.reference_weight = HybridRanker().reference_weight
    ranker.unlabelled_per_reference_ *= 10
    assert (ranker.gate(*inputs).ravel() >= with_references).all()


def test_hybrid_does_not_count_near_copies_of_the_query_as_nearer_than_the_labels():
    vectors, labels = clustered(n_labels=8, seed=5, noise=0.5)
    split = Protocol(name="half", unseen_labels=()).split(labels)
    ranker = HybridRanker().fit(vectors[split.train], labels[split.train], vectors[split.candidates])
    queries, candidates = normalized(vectors[split.queries]), normalized(vectors[split.candidates])
    copies = normalized(queries + 0.01 * np.random.default_rng(0).normal(size=queries.shape))
    to_copy = (queries * copies).sum(axis=1, keepdims=True)  # each query's similarity to its own copy
    nearest_reference = (queries @ ranker.references_.T).max(axis=1, keepdims=True)
    assert (to_copy > 0.99).all() and (to_copy > nearest_reference).all()
    assert (ranker.nearer_than_labels(queries, to_copy) == 0).all()
    assert (ranker.nearer_than_labels(queries, to_copy - 0.05) == 1).all()  # no copy: nearer, counted
    plain = queries @ candidates.T
    np.testing.assert_array_equal(
        ranker.nearer_than_labels(queries, np.concatenate([plain, to_copy], axis=1)),
        ranker.nearer_than_labels(queries, plain),
    )


def test_hybrid_keeps_a_fixed_sample_of_each_label_as_references():
    labels = np.array(["many"] * 100 + ["few"] * 10 + ["one"])
    rows = reference_rows(labels, limit=60)
    assert (np.diff(rows) > 0).all()
    assert {name: int((labels[rows] == name).sum()) for name in ("many", "few", "one")} == {
        "many": 20,
        "few": 10,
        "one": 1,
    }
    np.testing.assert_array_equal(rows, reference_rows(labels, limit=60))  # the same sample every fit
    assert len(reference_rows(labels, limit=2)) == 3  # one of each label, even beyond the limit
    vectors, labels = clustered(n_labels=4)
    ranker = HybridRanker().fit(vectors, labels)
    np.testing.assert_allclose(ranker.references_, vectors[reference_rows(labels)], atol=1e-6)


def test_hybrid_fitted_before_the_references_scores_as_without_them():
    vectors, labels = clustered(n_labels=8, seed=3)
    split = Protocol(name="half", unseen_labels=tuple(np.unique(labels)[::2].tolist())).split(labels)
    ranker = HybridRanker().fit(vectors[split.train], labels[split.train], vectors[split.candidates])
    queries, candidates = vectors[split.queries], vectors[split.candidates]
    assert not np.allclose(
        ranker.score(queries, candidates), _without_references(ranker).score(queries, candidates)
    )
    for name in ("references_", "unlabelled_per_reference_", "reference_weight", "reference_margin"):
        del ranker.__dict__[name]  # as a fit pickled before they existed unpickles
    np.testing.assert_allclose(
        ranker.score(queries, candidates), _without_references(ranker).score(queries, candidates)
    )


def _without_references(ranker):
    clone = HybridRanker(reference_weight=0.0)
    clone.__dict__.update({k: v for k, v in vars(ranker).items() if k.endswith("_")})
    return clone


def test_init_only_stores_parameters_and_fit_returns_self():
    ranker = get_method("probe", C=0.5)
    assert ranker.C == 0.5
    assert not [name for name in vars(ranker) if name.endswith("_")]
    vectors, labels = clustered()
    assert ranker.fit(vectors, labels) is ranker
    assert hasattr(ranker, "classifier_")


def test_get_method_composes_left_to_right_and_sends_params_to_the_last_step():
    ranker = get_method("probe+dba+qe", n_neighbours=9)
    assert isinstance(ranker, QueryExpansion) and ranker.n_neighbours == 9
    assert isinstance(ranker.base, DatabaseAugmentation) and ranker.base.n_neighbours == 5
    assert isinstance(ranker.base.base, ProbeRanker)
    assert isinstance(get_method("kreciprocal").base, CosineRanker)
    assert isinstance(get_method("kreciprocal"), KReciprocal)


@pytest.mark.parametrize("name", ["nope", "probe+lda", "cosine+"])
def test_get_method_rejects_unknown_names(name):
    with pytest.raises(ValueError, match="unknown ranking method"):
        get_method(name)


def test_rocchio_query_by_hand():
    candidates = np.eye(4, dtype=np.float32)
    refined = rocchio_query(np.array([1.0, 0, 0, 0]), candidates, [1], [2], alpha=1, beta=0.5, gamma=0.25)
    np.testing.assert_allclose(refined[0], normalized(np.array([[1.0, 0.5, -0.25, 0]]))[0], rtol=1e-6)


def test_refine_moves_relevant_neighbours_up_and_marked_nonrelevant_last():
    vectors, labels = clustered(seed=10)
    query, candidates = vectors[0], vectors[1:]
    candidate_labels = labels[1:]
    _, before = CosineRanker().rank(query[None], candidates)
    marked_relevant = [i for i in before[0][:20] if candidate_labels[i] == labels[0]][:3]
    marked_not = [i for i in before[0][:20] if candidate_labels[i] != labels[0]][:3]
    scores, after = refine(query, candidates, marked_relevant, marked_not)
    assert set(after[-len(marked_not) :].tolist()) == set(marked_not)
    precision = [(candidate_labels[ids[:20]] == labels[0]).mean() for ids in (before[0], after)]
    assert precision[1] > precision[0]
    assert scores.shape == after.shape == (len(candidates),)


def test_refine_rejects_contradicting_or_out_of_range_ids():
    vectors, _ = clustered()
    with pytest.raises(ValueError, match="both relevant and not relevant"):
        refine(vectors[0], vectors[1:], [3], [3])
    with pytest.raises(ValueError, match="must index"):
        refine(vectors[0], vectors[1:], [len(vectors)], [])


def test_learned_axes_come_from_a_fixed_sample_of_a_pool_over_the_limit(monkeypatch):
    monkeypatch.setattr(learned, "POOL_LIMIT", 100)
    vectors, labels = clustered(seed=15)
    train, pool = vectors[:40], vectors[40:]
    assert len(pool) > 100
    first = HybridRanker().fit(train, labels[:40], pool)
    again = HybridRanker().fit(train, labels[:40], pool)
    np.testing.assert_array_equal(first.weights_, again.weights_)  # the same sample each time
    whole = np.concatenate([train, pool])
    sampled_mean = first.mean_
    assert not np.allclose(sampled_mean, normalized(whole).mean(axis=0), atol=1e-6)
    monkeypatch.setattr(learned, "POOL_LIMIT", len(pool))
    np.testing.assert_allclose(
        HybridRanker().fit(train, labels[:40], pool).mean_, normalized(whole).mean(axis=0), atol=1e-6
    )
