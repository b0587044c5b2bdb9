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
