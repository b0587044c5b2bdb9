import math

import numpy as np
import pytest
from sklearn import metrics as sk

from inference.metrics import (
    Confusion,
    ap_from_histograms,
    auroc,
    auroc_from_histograms,
    average_precision,
    best_f1_from_histograms,
    best_f1_threshold,
    confusion,
    confusion_at_threshold,
    pr_curve,
    pr_curve_from_histograms,
    ranking_from_histograms,
    ranking_histogram,
    score_histogram,
    scores,
    threshold_histogram,
)
from inference.object_metrics import object_scores

SEEDS = [0, 1, 2]
DENSITIES = [0.02, 0.3, 0.7]


def random_masks(seed, density, shape=(48, 40)):
    rng = np.random.default_rng(seed)
    label = rng.random(shape) < density
    flip = rng.random(shape) < 0.2
    pred = np.where(flip, ~label, label)
    return pred, label


def random_probs(seed, density, shape=(48, 40), levels=None):
    rng = np.random.default_rng(seed)
    label = rng.random(shape) < density
    prob = np.clip(0.5 * label + 0.6 * rng.random(shape) - 0.05, 0.0, 1.0)
    if levels is not None:
        prob = np.rint(prob * (levels - 1)) / (levels - 1)
    return prob, label


def sklearn_scores(pred, label, zero_division="warn"):
    y_true, y_pred = label.ravel(), pred.ravel()
    return {
        "iou": sk.jaccard_score(y_true, y_pred, zero_division=zero_division),
        "f1": sk.f1_score(y_true, y_pred, zero_division=zero_division),
        "precision": sk.precision_score(y_true, y_pred, zero_division=zero_division),
        "recall": sk.recall_score(y_true, y_pred, zero_division=zero_division),
        "oa": sk.accuracy_score(y_true, y_pred),
        "kappa": sk.cohen_kappa_score(y_true, y_pred),
        "miou": sk.jaccard_score(y_true, y_pred, average="macro", labels=[0, 1], zero_division=zero_division),
        "mf1": sk.f1_score(y_true, y_pred, average="macro", labels=[0, 1], zero_division=zero_division),
    }


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("density", DENSITIES)
def test_pixel_scores_equal_sklearn(seed, density):
    pred, label = random_masks(seed, density)

    ours = scores(confusion(pred, label))

    for name, expected in sklearn_scores(pred, label).items():
        assert ours[name] == pytest.approx(expected, abs=1e-12), name


def test_confusion_counts_each_cell():
    pred = np.array([[1, 1, 0, 0]], bool)
    label = np.array([[1, 0, 1, 0]], bool)

    assert confusion(pred, label) == Confusion(tp=1, fp=1, fn=1, tn=1)


def test_confusion_ignores_pixels_outside_valid():
    pred = np.array([[1, 1, 0, 0]], bool)
    label = np.array([[1, 0, 1, 0]], bool)
    valid = np.array([[1, 0, 0, 1]], bool)

    assert confusion(pred, label, valid) == Confusion(tp=1, fp=0, fn=0, tn=1)


@pytest.mark.parametrize("seed", SEEDS)
def test_valid_mask_equals_scoring_only_the_valid_pixels(seed):
    pred, label = random_masks(seed, 0.3)
    valid = np.random.default_rng(seed + 100).random(label.shape) < 0.6

    ours = scores(confusion(pred, label, valid))

    assert ours == pytest.approx(sklearn_scores(pred[valid], label[valid]))


def test_confusions_add_up_to_the_pooled_confusion():
    pred, label = random_masks(3, 0.3, shape=(20, 20))
    halves = [confusion(pred[:10], label[:10]), confusion(pred[10:], label[10:])]

    assert sum(halves, Confusion.zero()) == confusion(pred, label)


def test_it_rejects_probabilities_as_masks():
    with pytest.raises(TypeError, match="threshold"):
        confusion(np.full((2, 2), 0.7), np.zeros((2, 2), bool))


def test_it_rejects_masks_of_different_shapes():
    with pytest.raises(ValueError, match="shape"):
        confusion(np.zeros((2, 2), bool), np.zeros((2, 3), bool))


# Empty-mask rules, documented in inference/metrics.py.


def test_both_masks_empty_scores_perfectly():
    empty = np.zeros((8, 8), bool)

    result = scores(confusion(empty, empty))

    assert result == {
        "iou": 1.0,
        "f1": 1.0,
        "precision": 1.0,
        "recall": 1.0,
        "oa": 1.0,
        "kappa": 1.0,
        "miou": 1.0,
        "mf1": 1.0,
    }


def test_false_alarm_on_unchanged_pair_has_zero_precision_and_full_recall():
    label = np.zeros((8, 8), bool)
    pred = label.copy()
    pred[2:4, 2:4] = True

    result = scores(confusion(pred, label))

    assert (result["precision"], result["recall"], result["f1"], result["iou"]) == (0, 1, 0, 0)
    assert result["oa"] == pytest.approx(60 / 64)


def test_missed_change_has_full_precision_and_zero_recall():
    label = np.zeros((8, 8), bool)
    label[2:4, 2:4] = True
    pred = np.zeros_like(label)

    result = scores(confusion(pred, label))

    assert (result["precision"], result["recall"], result["f1"], result["iou"]) == (1, 0, 0, 0)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize(("pred_value", "label_value"), [(False, False), (True, False), (False, True), (True, True)])
def test_empty_cases_equal_sklearn_with_zero_division_one(pred_value, label_value):
    pred = np.full((4, 4), pred_value)
    label = np.full((4, 4), label_value)

    ours = scores(confusion(pred, label))
    expected = sklearn_scores(pred, label, zero_division=1.0)

    for name in ("iou", "f1", "precision", "recall", "oa", "miou", "mf1"):
        assert ours[name] == pytest.approx(expected[name]), name


def test_kappa_is_one_when_both_are_the_same_single_class():
    full = np.ones((4, 4), bool)

    assert scores(confusion(full, full))["kappa"] == 1.0


def test_kappa_is_zero_when_prediction_is_constant_and_wrong():
    assert scores(confusion(np.zeros((4, 4), bool), np.ones((4, 4), bool)))["kappa"] == 0.0


def test_no_valid_pixel_gives_nan_scores():
    result = scores(Confusion.zero())

    assert all(math.isnan(v) for v in result.values())


# Ranking metrics.


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("density", DENSITIES)
def test_auroc_and_ap_equal_sklearn(seed, density):
    prob, label = random_probs(seed, density)

    assert auroc(prob, label) == pytest.approx(sk.roc_auc_score(label.ravel(), prob.ravel()))
    assert average_precision(prob, label) == pytest.approx(sk.average_precision_score(label.ravel(), prob.ravel()))


@pytest.mark.parametrize("seed", SEEDS)
def test_auroc_and_ap_handle_ties_like_sklearn(seed):
    prob, label = random_probs(seed, 0.3, levels=5)

    assert auroc(prob, label) == pytest.approx(sk.roc_auc_score(label.ravel(), prob.ravel()))
    assert average_precision(prob, label) == pytest.approx(sk.average_precision_score(label.ravel(), prob.ravel()))


@pytest.mark.parametrize("label_value", [False, True])
def test_ranking_metrics_are_none_for_a_single_class(label_value):
    prob, _ = random_probs(0, 0.3)
    label = np.full(prob.shape, label_value)

    assert auroc(prob, label) is None
    assert average_precision(prob, label) is None


def test_it_rejects_probabilities_outside_zero_one():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        auroc(np.array([0.2, 1.5]), np.array([True, False]))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("density", DENSITIES)
def test_best_f1_threshold_is_the_best_of_all_thresholds(seed, density):
    prob, label = random_probs(seed, density, levels=64)
    brute = {t: sk.f1_score(label.ravel(), (prob >= t).ravel(), zero_division=0.0) for t in np.unique(prob)}
    best = max(brute.values())

    threshold, f1 = best_f1_threshold(prob, label)

    assert f1 == pytest.approx(best)
    assert brute[threshold] == pytest.approx(best)
    assert threshold == max(t for t, v in brute.items() if v == pytest.approx(best))


def test_best_f1_without_change_predicts_nothing():
    prob = np.array([0.1, 0.9, 1.0])

    threshold, f1 = best_f1_threshold(prob, np.zeros(3, bool))

    assert f1 == 1.0
    assert threshold > 1.0
    assert not np.any(prob >= threshold)


# Histogram (poolable) versions: exact for probabilities quantised to the histogram's levels.


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("density", DENSITIES)
def test_histogram_auroc_and_ap_equal_sklearn_for_quantised_probs(seed, density):
    prob, label = random_probs(seed, density, levels=256)

    positive, negative = score_histogram(prob, label, bins=256)

    assert auroc_from_histograms(positive, negative) == pytest.approx(
        sk.roc_auc_score(label.ravel(), prob.ravel()), abs=1e-12
    )
    assert ap_from_histograms(positive, negative) == pytest.approx(
        sk.average_precision_score(label.ravel(), prob.ravel()), abs=1e-12
    )


def test_pooled_histograms_equal_scores_of_the_concatenated_pixels():
    pairs = [random_probs(seed, 0.3, levels=256) for seed in SEEDS]
    hists = [score_histogram(prob, label) for prob, label in pairs]
    positive = sum(h[0] for h in hists)
    negative = sum(h[1] for h in hists)
    all_prob = np.concatenate([p.ravel() for p, _ in pairs])
    all_label = np.concatenate([lab.ravel() for _, lab in pairs])

    assert auroc_from_histograms(positive, negative) == pytest.approx(sk.roc_auc_score(all_label, all_prob))
    assert ap_from_histograms(positive, negative) == pytest.approx(sk.average_precision_score(all_label, all_prob))


def test_histogram_auroc_is_close_for_continuous_probs():
    prob, label = random_probs(5, 0.3, shape=(100, 100))

    positive, negative = score_histogram(prob, label)

    assert auroc_from_histograms(positive, negative) == pytest.approx(
        sk.roc_auc_score(label.ravel(), prob.ravel()), abs=2e-3
    )


def test_histogram_respects_valid_mask():
    prob, label = random_probs(1, 0.3, levels=256)
    valid = np.zeros(label.shape, bool)
    valid[:10] = True

    positive, negative = score_histogram(prob, label, valid=valid)

    assert positive.sum() + negative.sum() == valid.sum()
    assert positive.sum() == label[valid].sum()


def test_histogram_metrics_are_none_for_a_single_class():
    prob, _ = random_probs(0, 0.3)
    positive, negative = score_histogram(prob, np.zeros(prob.shape, bool))

    assert auroc_from_histograms(positive, negative) is None
    assert ap_from_histograms(positive, negative) is None


@pytest.mark.parametrize("seed", SEEDS)
def test_histogram_best_f1_equals_exact_best_f1_for_quantised_probs(seed):
    prob, label = random_probs(seed, 0.3, levels=256)

    assert best_f1_from_histograms(*score_histogram(prob, label)) == pytest.approx(best_f1_threshold(prob, label))


@pytest.mark.parametrize("seed", SEEDS)
def test_pr_curve_matches_thresholded_precision_and_recall(seed):
    prob, label = random_probs(seed, 0.3, levels=11)

    thresholds, precision, recall = pr_curve(prob, label, n=11)

    assert len(thresholds) == len(precision) == len(recall) == 11
    for t, p, r in zip(thresholds, precision, recall, strict=True):
        pred = (prob >= t - 1e-9).ravel()
        assert p == pytest.approx(sk.precision_score(label.ravel(), pred, zero_division=1.0))
        assert r == pytest.approx(sk.recall_score(label.ravel(), pred, zero_division=1.0))


def test_pr_curve_recall_falls_as_threshold_rises():
    prob, label = random_probs(2, 0.3)

    _, _, recall = pr_curve_from_histograms(*score_histogram(prob, label, bins=32))

    assert recall[0] == 1.0
    assert np.all(np.diff(recall) <= 0)


# The stored histograms: 2 exact groups (p == 0, p == 1) around `bins` intervals, proven error bounds.


def test_ranking_histogram_puts_each_score_in_its_stated_group():
    bins = 8
    prob = np.array([0.0, 1e-30, 0.124999, 0.125, 0.5, 0.999999, 1.0])
    label = np.array([1, 0, 1, 0, 1, 0, 1], bool)

    positive, negative = ranking_histogram(prob, label, bins=bins)

    # by hand: 0 -> 0; 1e-30 and 0.124999 in (0, 1/8) -> 1; 0.125 in [1/8, 2/8) -> 2;
    # 0.5 in [4/8, 5/8) -> 5; 0.999999 in [7/8, 1) -> 8; 1 -> 9
    assert positive.tolist() == [1, 1, 0, 0, 0, 1, 0, 0, 0, 1]
    assert negative.tolist() == [0, 1, 1, 0, 0, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError):
        ranking_histogram(prob, label, bins=10)


def ranking_cases():
    """(name, prob, label) pooled over several seeded pairs: continuous, crowded into one group,
    with many exact 0 and 1 scores, and a classical-map-like mass of low scores."""
    rng = np.random.default_rng(7)
    cases = []
    labels = [rng.random((40, 30)) < d for d in (0.05, 0.3, 0.6)]
    continuous = [np.clip(0.35 * lab + 0.65 * rng.random(lab.shape), 0, 1) for lab in labels]
    cases.append(("continuous", continuous, labels))
    crowded = [0.5 + (0.3 * lab + 0.7 * rng.random(lab.shape)) / 5000 for lab in labels]  # all in one group
    cases.append(("crowded", crowded, labels))
    saturated = [
        np.where(rng.random(lab.shape) < 0.3, lab.astype(float), p) for lab, p in zip(labels, continuous, strict=True)
    ]
    cases.append(("exact 0 and 1", saturated, labels))
    low = [np.clip((0.08 * lab + rng.gamma(1.0, 0.04, lab.shape)), 0, 1).astype(np.float32) for lab in labels]
    cases.append(("low scores", low, labels))
    return cases


@pytest.mark.parametrize("bins", [16, 4096])
@pytest.mark.parametrize("case", ranking_cases(), ids=lambda c: c[0])
def test_pooled_auroc_and_ap_are_within_their_proven_bounds_of_sklearn(case, bins):
    _, probs, labels = case
    hists = [ranking_histogram(p, lab, bins=bins) for p, lab in zip(probs, labels, strict=True)]
    positive, negative = sum(h[0] for h in hists), sum(h[1] for h in hists)
    all_prob = np.concatenate([p.ravel() for p in probs])
    all_label = np.concatenate([lab.ravel() for lab in labels])

    pooled = ranking_from_histograms(positive, negative)

    exact_auroc = sk.roc_auc_score(all_label, all_prob)
    exact_ap = sk.average_precision_score(all_label, all_prob)
    assert abs(pooled["auroc"] - exact_auroc) <= pooled["auroc_bound"] + 1e-12
    assert abs(pooled["ap"] - exact_ap) <= pooled["ap_bound"] + 1e-12
    assert pooled["auroc_bound"] <= 0.5 and pooled["ap_bound"] <= 1.0


def test_the_bounds_are_tight_enough_to_matter():
    """Continuous scores, the default groups: the bound is small; all scores inside one group: AUROC says
    0.5 and its bound (0.5) admits the exact value; scores that are all exact 0 or 1: no error."""
    cases = {name: (probs, labels) for name, probs, labels in ranking_cases()}
    probs, labels = cases["continuous"]
    hists = [ranking_histogram(p, lab) for p, lab in zip(probs, labels, strict=True)]
    pooled = ranking_from_histograms(sum(h[0] for h in hists), sum(h[1] for h in hists))
    assert pooled["auroc_bound"] < 5e-4 and pooled["ap_bound"] < 1e-3

    probs, labels = cases["crowded"]
    hists = [ranking_histogram(p, lab) for p, lab in zip(probs, labels, strict=True)]
    pooled = ranking_from_histograms(sum(h[0] for h in hists), sum(h[1] for h in hists))
    assert pooled["auroc"] == 0.5 and pooled["auroc_bound"] == 0.5

    label = np.random.default_rng(3).random((30, 30)) < 0.4
    prob = np.where(np.random.default_rng(4).random(label.shape) < 0.8, label, ~label).astype(float)
    pooled = ranking_from_histograms(*ranking_histogram(prob, label))
    assert pooled["auroc_bound"] == 0.0 and pooled["ap_bound"] == 0.0
    assert pooled["auroc"] == pytest.approx(sk.roc_auc_score(label.ravel(), prob.ravel()), abs=1e-15)
    assert pooled["ap"] == pytest.approx(sk.average_precision_score(label.ravel(), prob.ravel()), abs=1e-15)


def test_legacy_rounded_histograms_get_a_bound_without_exact_groups():
    prob, label = random_probs(5, 0.3, shape=(60, 60))

    pooled = ranking_from_histograms(*score_histogram(prob, label, bins=256), exact_groups=())

    assert abs(pooled["auroc"] - sk.roc_auc_score(label.ravel(), prob.ravel())) <= pooled["auroc_bound"]
    assert abs(pooled["ap"] - sk.average_precision_score(label.ravel(), prob.ravel())) <= pooled["ap_bound"]


def test_ranking_from_histograms_is_none_for_a_single_class():
    prob, _ = random_probs(0, 0.3)
    pooled = ranking_from_histograms(*ranking_histogram(prob, np.zeros(prob.shape, bool)))
    assert pooled == {"auroc": None, "ap": None, "auroc_bound": None, "ap_bound": None}


@pytest.mark.parametrize("seed", SEEDS)
def test_best_f1_and_pr_curve_from_the_stored_histogram_are_exact_at_their_thresholds(seed):
    bins = 64
    prob, label = random_probs(seed, 0.3, shape=(50, 50))
    prob[0, :5] = 0.0
    prob[1, :5] = 1.0
    positive, negative = ranking_histogram(prob, label, bins=bins)
    positive, negative = threshold_histogram(positive), threshold_histogram(negative)
    y = label.ravel()
    grid = np.arange(bins + 1) / bins
    f1_at = [sk.f1_score(y, (prob >= t).ravel(), zero_division=1.0) for t in grid]

    threshold, f1 = best_f1_from_histograms(positive, negative)
    thresholds, precision, recall = pr_curve_from_histograms(positive, negative)

    assert f1 == pytest.approx(max(f1_at), abs=1e-12)
    assert f1 == pytest.approx(sk.f1_score(y, (prob >= threshold).ravel()), abs=1e-12)
    np.testing.assert_allclose(thresholds, grid)
    for t, p, r in zip(thresholds, precision, recall, strict=True):
        assert p == pytest.approx(sk.precision_score(y, (prob >= t).ravel(), zero_division=1.0), abs=1e-12)
        assert r == pytest.approx(sk.recall_score(y, (prob >= t).ravel(), zero_division=1.0), abs=1e-12)


@pytest.mark.parametrize("bins", [256, 4096])
@pytest.mark.parametrize("seed", SEEDS)
def test_the_confusion_at_a_threshold_from_histograms_is_scikit_learns_at_every_grid_threshold(seed, bins):
    prob, label = random_probs(seed, 0.3, shape=(50, 50))
    prob = prob.astype(np.float32)
    prob[0, :6] = [0.0, 1.0, 0.5, 1 / bins, 3 / bins, np.nextafter(np.float32(0.5), np.float32(0))]  # on/near edges
    positive, negative = (threshold_histogram(counts) for counts in ranking_histogram(prob, label, bins=bins))
    rng = np.random.default_rng(seed)
    for level in [0, 1, 3, bins // 2, bins - 1, bins, *rng.integers(0, bins + 1, size=20)]:
        threshold = int(level) / bins
        tn, fp, fn, tp = sk.confusion_matrix(label.ravel(), (prob >= threshold).ravel(), labels=[False, True]).ravel()
        assert confusion_at_threshold(positive, negative, threshold) == Confusion(tp, fp, fn, tn)
    assert confusion_at_threshold(positive, negative, 1.0 + 1.0 / bins) == Confusion(0, 0, label.sum(), (~label).sum())


@pytest.mark.parametrize("seed", SEEDS)
def test_the_confusion_at_a_threshold_from_a_score_histogram_is_exact_on_maps_quantised_to_its_levels(seed):
    levels = 256  # training validation: 8-bit maps, level round(p * 255), thresholds m / 255
    prob, label = random_probs(seed, 0.3, shape=(50, 50), levels=levels)
    positive, negative = score_histogram(prob, label, bins=levels)
    for level in (0, 1, 127, 128, 254, 255):
        threshold = level / (levels - 1)
        tn, fp, fn, tp = sk.confusion_matrix(label.ravel(), (prob >= threshold).ravel(), labels=[False, True]).ravel()
        assert confusion_at_threshold(positive, negative, threshold) == Confusion(tp, fp, fn, tn)


# Object-level metrics on hand-built masks.


def blank():
    return np.zeros((20, 20), bool)


def test_objects_match_when_iou_reaches_threshold():
    label, pred = blank(), blank()
    label[2:6, 2:6] = True  # 16 px
    pred[2:6, 3:7] = True  # overlaps 12 px: IoU 12/20 = 0.6
    label[10:14, 10:14] = True  # missed
    pred[16:18, 0:2] = True  # false alarm

    result = object_scores(pred, label)

    assert result == {
        "precision": 0.5,
        "recall": 0.5,
        "f1": 0.5,
        "matched": 1,
        "predicted": 2,
        "actual": 2,
    }


def test_objects_below_iou_threshold_do_not_match():
    label, pred = blank(), blank()
    label[2:6, 2:6] = True
    pred[2:6, 4:8] = True  # IoU 8/24

    result = object_scores(pred, label)

    assert result["matched"] == 0
    assert object_scores(pred, label, iou_threshold=0.3)["matched"] == 1


def test_one_prediction_matches_at_most_one_object():
    label, pred = blank(), blank()
    label[2:6, 2:4] = True
    label[2:6, 5:7] = True  # two objects separated by a column
    pred[2:6, 2:7] = True  # one prediction covering both: IoU 8/20 each

    result = object_scores(pred, label, iou_threshold=0.4)

    assert (result["matched"], result["predicted"], result["actual"]) == (1, 1, 2)


def test_connectivity_decides_whether_diagonal_pixels_are_one_object():
    label = blank()
    label[3, 3] = label[4, 4] = True

    assert object_scores(label, label, connectivity=8)["actual"] == 1
    assert object_scores(label, label, connectivity=4)["actual"] == 2


def test_object_scores_with_no_objects_anywhere_are_perfect():
    result = object_scores(blank(), blank())

    assert (result["precision"], result["recall"], result["f1"]) == (1.0, 1.0, 1.0)


def test_object_false_alarms_on_empty_label_have_zero_precision():
    pred = blank()
    pred[1:3, 1:3] = True

    result = object_scores(pred, blank())

    assert (result["precision"], result["recall"], result["f1"]) == (0.0, 1.0, 0.0)


def test_objects_outside_the_valid_area_count_on_neither_side():
    """A perfect prediction inside the valid area has object recall 1, even when a labelled object
    lies outside it (it scored 0.5 when only the prediction was cut to the valid area)."""
    from scipy import ndimage

    label = blank()
    label[2:6, 2:6] = True  # inside the valid area
    label[14:18, 14:18] = True  # outside it
    valid = np.ones(label.shape, bool)
    valid[12:, 12:] = False
    pred = label.copy()  # a perfect prediction, cut to the valid area on both sides below

    result = object_scores(pred, label, valid=valid)

    assert ndimage.label(label & valid, structure=np.ones((3, 3)))[1] == 1  # reference object count
    assert (result["matched"], result["predicted"], result["actual"]) == (1, 1, 1)
    assert (result["precision"], result["recall"], result["f1"]) == (1.0, 1.0, 1.0)


def test_pair_metrics_leave_label_objects_outside_the_valid_area_out():
    from inference.evaluation import pair_metrics

    label = blank()
    label[2:6, 2:6] = True
    label[14:18, 14:18] = True
    valid = np.ones(label.shape, bool)
    valid[12:, 12:] = False
    prob = label.astype(np.float32)

    result = pair_metrics(prob, prob >= 0.5, label, valid)

    assert (result["object_precision"], result["object_recall"], result["object_f1"]) == (1.0, 1.0, 1.0)
    assert (result["tp"], result["fn"]) == (16, 0)


@pytest.mark.parametrize("seed", range(3))
def test_packed_counts_come_back_exactly_and_small(seed):
    import json

    from inference.metrics import pack_counts, unpack_counts

    rng = np.random.default_rng(seed)
    prob = rng.beta(0.5, 0.5, (256, 256)).astype(np.float32)
    label = rng.random((256, 256)) < 0.2
    for counts in ranking_histogram(prob, label, bins=4096):
        packed = pack_counts(counts)
        assert json.loads(json.dumps(packed)) == packed
        np.testing.assert_array_equal(unpack_counts(packed), counts)
        assert len(packed) < len(json.dumps(counts.tolist())) / 2  # every group filled: the least it saves
    np.testing.assert_array_equal(unpack_counts([3, 0, 2]), [3, 0, 2])  # results stored as lists before


def test_packed_counts_refuse_what_they_cannot_hold():
    from inference.metrics import pack_counts, unpack_counts

    for bad in (np.array([-1, 2]), np.array([2**32]), np.zeros((2, 2), int)):
        with pytest.raises(ValueError):
            pack_counts(bad)
    with pytest.raises(ValueError):
        unpack_counts("not packed")


def test_pair_metrics_store_the_histogram_numpy_counts():
    from inference.evaluation import pair_metrics
    from inference.metrics import RANKING_BINS as HISTOGRAM_BINS
    from inference.metrics import unpack_counts

    rng = np.random.default_rng(5)
    prob = rng.random((64, 64)).astype(np.float32)
    prob[:4] = 0.0
    prob[-4:] = 1.0
    label = rng.random((64, 64)) < 0.3
    stored = pair_metrics(prob, prob >= 0.5, label)
    # independent reference: numpy's histogram over the stated group edges (0, (0, 1/B), [k/B, (k+1)/B), 1)
    edges = np.concatenate([[0.0, np.nextafter(0.0, 1.0)], np.arange(1, HISTOGRAM_BINS + 1) / HISTOGRAM_BINS, [1.0]])
    for name, pixels in (("hist_pos", prob[label]), ("hist_neg", prob[~label])):
        expected = np.histogram(pixels[pixels < 1.0], bins=edges[:-1])[0]
        expected = np.append(expected, (pixels == 1.0).sum())
        np.testing.assert_array_equal(unpack_counts(stored[name]), expected)
