"""`ranking_scores` (one sort per map, used for every pair of a run) equals the three functions it replaces."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from inference import metrics


@pytest.mark.parametrize("seed", range(4))
def test_one_sort_gives_what_the_three_functions_give(seed):
    rng = np.random.default_rng(seed)
    prob = np.round(rng.random(4000), 2).astype(np.float32)  # many ties
    label = rng.random(4000) < prob * 0.8
    scores = metrics.ranking_scores(prob, label)
    assert scores["auroc"] == metrics.auroc(prob, label)
    assert scores["ap"] == metrics.average_precision(prob, label)
    assert (scores["best_f1_threshold"], scores["best_f1"]) == metrics.best_f1_threshold(prob, label)
    assert scores["auroc"] == pytest.approx(roc_auc_score(label, prob), abs=1e-12)
    assert scores["ap"] == pytest.approx(average_precision_score(label, prob), abs=1e-12)


def test_without_change_predicting_nothing_is_best():
    prob = np.array([0.1, 0.7, 0.3], np.float32)
    label = np.zeros(3, bool)
    scores = metrics.ranking_scores(prob, label)
    assert scores["auroc"] is None and scores["ap"] is None
    assert (scores["best_f1_threshold"], scores["best_f1"]) == metrics.best_f1_threshold(prob, label)


def test_when_every_pixel_changed_the_lowest_score_finds_them_all():
    prob = np.array([0.4, 0.9, 0.2, 0.9], np.float32)
    scores = metrics.ranking_scores(prob, np.ones(4, bool))
    assert scores["auroc"] is None and scores["ap"] is None
    assert (scores["best_f1_threshold"], scores["best_f1"]) == (pytest.approx(0.2), 1.0)


@pytest.mark.parametrize("seed", range(3))
def test_unchanged_pixels_tied_with_and_between_changed_ones_count_like_sklearn(seed):
    """Few changed pixels among many unchanged ones on a few levels: every changed score is tied with
    unchanged pixels, and runs of unchanged-only scores lie between them."""
    from sklearn.metrics import precision_recall_curve

    rng = np.random.default_rng(seed)
    prob = rng.integers(0, 12, 3000).astype(np.float64) / 11
    label = rng.random(3000) < 0.02 + 0.1 * prob
    scores = metrics.ranking_scores(prob, label)
    assert scores["auroc"] == pytest.approx(roc_auc_score(label, prob), abs=1e-12)
    assert scores["ap"] == pytest.approx(average_precision_score(label, prob), abs=1e-12)
    precision, recall, thresholds = precision_recall_curve(label, prob)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-300)
    best = np.flatnonzero(f1 == f1.max())
    assert scores["best_f1"] == pytest.approx(f1.max(), abs=1e-12)
    assert scores["best_f1_threshold"] == thresholds[best].max()
