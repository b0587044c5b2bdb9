import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import jaccard_score

from inference.evaluation import pair_metrics
from inference.metrics import confusion, scores, unpack_counts
from inference.statistics import (
    bootstrap_ci,
    compare_with_baseline,
    consensus_map,
    holm_adjust,
    mask_iou,
    paired_comparison,
    percentile,
)


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
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(candidate, baseline).pvalue, rel=1e-12)
    low, high = result["ci"]
    assert low <= diff.mean() <= high


def test_small_differences_are_not_dropped_before_the_test():
    """Ten pairs slightly worse, five much better: dropping |d| <= 1e-3 first would call it significant."""
    baseline = np.linspace(0.2, 0.6, 15)
    candidate = baseline.copy()
    candidate[:10] -= 0.0008
    candidate[10:] += 0.3
    result = paired_comparison(candidate, baseline)
    for zero_method in ("wilcox", "pratt", "zsplit"):
        assert stats.wilcoxon(candidate, baseline, zero_method=zero_method).pvalue > 0.5
    assert result["wilcoxon_p"] == pytest.approx(stats.wilcoxon(candidate, baseline).pvalue, rel=1e-12)
    assert result["wilcoxon_p"] > 0.5 and result["small_sample"] and "scipy.stats.wilcoxon" in result["test"]


def test_holm_adjustment_matches_the_step_down_definition():
    adjusted = holm_adjust({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    # sorted 0.01, 0.03, 0.04 -> 3*0.01, max(0.03, 2*0.03), max(0.06, 1*0.04)
    assert adjusted == pytest.approx({"a": 0.03, "c": 0.06, "b": 0.06, "d": None})
    assert holm_adjust({"a": 0.6, "b": 0.7}) == pytest.approx({"a": 1.0, "b": 1.0})


def test_compare_with_baseline_uses_shared_pairs_and_adjusts_for_each_detector():
    rng = np.random.default_rng(3)
    base = {i: float(v) for i, v in enumerate(rng.random(25))}
    better = {i: v + 0.05 + float(rng.normal(0, 0.02)) for i, v in base.items()}
    other = {i: v + float(rng.normal(0, 0.05)) for i, v in base.items() if i % 2}
    result = compare_with_baseline({"base": base, "better": better, "other": other}, "base", seed=0)
    assert set(result) == {"better", "other"} and result["other"]["n"] == 12
    shared = sorted(other)
    raw = {
        "better": stats.wilcoxon([better[i] for i in base], [base[i] for i in base]).pvalue,
        "other": stats.wilcoxon([other[i] for i in shared], [base[i] for i in shared]).pvalue,
    }
    low, high = sorted(raw, key=raw.get)
    assert result[low]["wilcoxon_p_holm"] == pytest.approx(min(1.0, 2 * raw[low]))
    assert result[high]["wilcoxon_p_holm"] == pytest.approx(max(min(1.0, 2 * raw[low]), raw[high]))


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
    assert unpack_counts(result["hist_pos"]).sum() == int((label & valid).sum())
    assert pair_metrics(prob, mask, None) == {"changed_fraction": pytest.approx(mask.mean())}
