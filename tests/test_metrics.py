import numpy as np
import pytest
from sklearn.metrics import average_precision_score, ndcg_score

from imagerank.evaluation.metrics import (
    ap_at_k,
    average_precision,
    bootstrap_interval,
    mean_over_queries,
    ndcg_at_k,
    precision_at_k,
    precision_curve,
    recall_at_k,
    recall_curve,
    relevance_matrix,
)

# hits at ranks 1, 3 and 4 of five; hits at rank 2 only; no hits at all
RANKED = np.array(
    [
        [1, 0, 1, 1, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ],
    dtype=bool,
)


def test_relevance_matrix_compares_candidate_labels_with_the_query_label():
    candidate_labels = np.array(["cat", "dog", "cat", "owl"])
    ids = np.array([[2, 1, 0], [3, 0, -1]])
    relevant = relevance_matrix(ids, candidate_labels, np.array(["cat", "owl"]))
    assert relevant.tolist() == [[True, False, True], [True, False, False]]


def test_precision_at_k_counts_hits_in_the_top_k():
    assert precision_at_k(RANKED, 1).tolist() == [1.0, 0.0, 0.0]
    assert precision_at_k(RANKED, 4).tolist() == [0.75, 0.25, 0.0]


def test_precision_at_k_counts_missing_ranks_as_misses():
    assert precision_at_k(RANKED, 10).tolist() == [0.3, 0.1, 0.0]


def test_ap_at_k_follows_the_reference_definition():
    # query 0 at K=4: (P@1 + P@3 + P@4) / 4 = (1 + 2/3 + 3/4) / 4
    np.testing.assert_allclose(ap_at_k(RANKED, 4), [(1 + 2 / 3 + 3 / 4) / 4, (1 / 2) / 4, 0.0])
    # at K=2 the hits at ranks 3 and 4 no longer count
    np.testing.assert_allclose(ap_at_k(RANKED, 2), [1 / 2, (1 / 2) / 2, 0.0])


def test_ap_at_k_of_a_perfect_ranking_is_one():
    assert ap_at_k(np.ones((2, 10), bool), 10).tolist() == [1.0, 1.0]


def test_average_precision_divides_by_the_number_of_relevant_candidates():
    # query 0 has a fourth relevant candidate that the ranking never returns
    np.testing.assert_allclose(
        average_precision(RANKED, np.array([4, 1, 0])), [(1 + 2 / 3 + 3 / 4) / 4, 1 / 2, 0.0]
    )


def test_average_precision_matches_scikit_learn_on_random_full_rankings():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 50))
    truth = rng.random((20, 50)) < 0.2
    truth[0] = False  # a query with nothing relevant: both give 0
    order = np.argsort(-scores, axis=1)
    relevant = np.take_along_axis(truth, order, axis=1)
    expected = [average_precision_score(t, s) if t.any() else 0.0 for t, s in zip(truth, scores, strict=True)]
    np.testing.assert_allclose(average_precision(relevant, truth.sum(axis=1)), expected)


def test_recall_at_k():
    np.testing.assert_allclose(recall_at_k(RANKED, np.array([4, 1, 0]), 3), [2 / 4, 1.0, 0.0])


def test_ndcg_at_k_by_hand():
    discount = 1 / np.log2(np.arange(2, 7))
    expected_first = (discount[0] + discount[2] + discount[3]) / discount[:3].sum()
    expected_second = discount[1] / discount[0]
    np.testing.assert_allclose(
        ndcg_at_k(RANKED, np.array([3, 1, 0]), 5), [expected_first, expected_second, 0.0]
    )


def test_ndcg_at_k_matches_scikit_learn_on_full_rankings():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(10, 30))
    truth = rng.random((10, 30)) < 0.3
    truth[:, 0] = True
    relevant = np.take_along_axis(truth, np.argsort(-scores, axis=1), axis=1)
    for k in (1, 5, 30):
        expected = [ndcg_score([t], [s], k=k) for t, s in zip(truth, scores, strict=True)]
        np.testing.assert_allclose(ndcg_at_k(relevant, truth.sum(axis=1), k), expected)


def test_curves_hold_the_mean_metric_at_each_k():
    n_relevant = np.array([4, 1, 2])
    curve = precision_curve(RANKED, 6)
    recall = recall_curve(RANKED, n_relevant, 6)
    for k in range(1, 7):
        assert curve[k - 1] == pytest.approx(precision_at_k(RANKED, k).mean())
        assert recall[k - 1] == pytest.approx(recall_at_k(RANKED, n_relevant, k).mean())


def test_mean_over_zero_queries_is_an_error():
    with pytest.raises(ValueError, match="zero queries"):
        mean_over_queries(np.array([]))


def test_k_below_one_is_an_error():
    with pytest.raises(ValueError, match="at least 1"):
        precision_at_k(RANKED, 0)


def test_bootstrap_interval_brackets_the_mean_and_is_seeded():
    values = np.random.default_rng(2).random(500)
    low, high = bootstrap_interval(values, seed=3)
    assert low < values.mean() < high
    # the standard error of a uniform mean over 500 queries is about 0.013: a 95% interval ~ +-0.025
    assert 0.03 < high - low < 0.07
    assert bootstrap_interval(values, seed=3) == (low, high)
    assert bootstrap_interval(values, seed=4) != (low, high)


def test_bootstrap_interval_of_constant_values_is_a_point():
    assert bootstrap_interval(np.full(10, 0.5)) == (0.5, 0.5)
