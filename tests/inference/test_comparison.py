import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import jaccard_score

from inference.comparison import bootstrap_ci, consensus_map, mask_iou, paired_comparison, percentile
from inference.evaluation import pair_metrics
from inference.metrics import confusion, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_ci_contains_the_mean_and_narrows_with_more_pairs(seed):
    rng = np.random.default_rng(seed)
    small, large = rng.random(10), rng.random(400)
    low, high = bootstrap_ci(small, seed=seed)
    assert low <= small.mean() <= high
    large_low, large_high = bootstrap_ci(large, seed=seed)
    assert (large_high - large_low) < (high - low)


def test_bootstrap_ci_edge_cases():
    assert bootstrap_ci([0.5]) is None
    assert bootstrap_ci([0.3, 0.3, 0.3]) == (0.3, 0.3)
    assert bootstrap_ci([0.1, None, 0.9]) is not None


def test_paired_comparison_counts_and_matches_scipy():
    rng = np.random.default_rng(7)
    baseline = rng.random(30)
    candidate = baseline + rng.normal(0.05, 0.05, 30)
    candidate[:3] = baseline[:3]  # exact ties
    result = paired_comparison(candidate, baseline, seed=0)
    diff = candidate - baseline
    assert result["ties"] >= 3
    assert result["wins"] == int((diff > 1e-3).sum())
    assert result["losses"] == int((diff < -1e-3).sum())
    assert result["wins"] + result["ties"] + result["losses"] == 30
    kept = diff[np.abs(diff) > 1e-3]
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(kept).pvalue)
    low, high = result["ci"]
    assert low <= diff.mean() <= high


def test_paired_comparison_of_identical_detectors_is_all_ties():
    values = [0.2, 0.4, 0.6]
    result = paired_comparison(values, values)
    assert result["ties"] == 3 and result["wilcoxon_p"] is None


@pytest.mark.parametrize("seed", [0, 1])
def test_mask_iou_equals_sklearn_jaccard(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.random((20, 20)) > 0.6, rng.random((20, 20)) > 0.5
    assert mask_iou(a, b) == pytest.approx(jaccard_score(a.ravel(), b.ravel()))
    assert mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0


def test_consensus_map_is_the_share_of_detectors():
    a = np.array([[1, 0], [1, 1]], bool)
    b = np.array([[1, 0], [0, 1]], bool)
    np.testing.assert_allclose(consensus_map([a, b]), [[1.0, 0.0], [0.5, 1.0]])


def test_percentile_ignores_missing_values():
    assert percentile([None, 1.0, 3.0], 50) == 2.0
    assert percentile([], 50) is None


def test_pair_metrics_agree_with_the_metric_core_and_skip_invalid_pixels():
    rng = np.random.default_rng(3)
    prob = rng.random((16, 16)).astype(np.float32)
    label = rng.random((16, 16)) > 0.7
    valid = np.ones((16, 16), bool)
    valid[:, :4] = False
    mask = prob >= 0.5
    result = pair_metrics(prob, mask, label, valid)
    expected = scores(confusion(mask, label, valid))
    assert result["iou"] == pytest.approx(expected["iou"])
    assert result["tp"] + result["fp"] + result["fn"] + result["tn"] == valid.sum()
    assert sum(result["hist_pos"]) == int((label & valid).sum())
    assert pair_metrics(prob, mask, None) == {"changed_fraction": pytest.approx(mask.mean())}
