"""Change-detection metrics: a functional core on boolean masks and probability maps.

Pixel metrics come from one :class:`Confusion` (``tp, fp, fn, tn``); confusions add up, so
dataset scores are computed from the pooled confusion, never by averaging per-pair scores.
"Positive" is the change class. ``iou, f1, precision, recall`` are for the change class;
``miou`` and ``mf1`` average the change and no-change classes; ``oa`` is overall accuracy and
``kappa`` is Cohen's kappa.

Empty cases (these equal scikit-learn's ``zero_division=1.0`` and are tested):

- a ratio whose denominator is zero is **1.0** - nothing to find, or nothing claimed, counts as
  vacuously right: ``precision = 1`` when nothing is predicted, ``recall = 1`` when the label has
  no change, ``iou = f1 = 1`` only when both are empty (otherwise they are 0 when ``tp = 0``).
  So predicted change on an unchanged pair gives precision 0, recall 1, f1 0, iou 0; a missed
  change gives precision 1, recall 0, f1 0, iou 0. The same rule applies to the no-change class
  in ``miou``/``mf1`` and to :func:`inference.object_metrics.object_scores`;
- ``kappa = 1.0`` when the chance agreement is 1, which happens only when prediction and label
  are the same single class everywhere (perfect agreement; scikit-learn returns NaN);
- with no valid pixel at all (``tp + fp + fn + tn = 0``) every score is NaN.

Ranking metrics (:func:`auroc`, :func:`average_precision`) are **None** when the label holds a
single class, because they are undefined. They are exact (ties handled as scikit-learn does).
For datasets, a pair is reduced to per-level counts of changed and unchanged pixels that add up
across pairs; ``*_from_histograms`` then give pooled AUROC, AP, PR curve and best F1.

- :func:`ranking_histogram` (what the engine stores) has ``bins + 2`` groups, lowest first:
  ``p == 0`` exactly, then ``0 < p < 1/bins``, then ``[(j - 1)/bins, j/bins)`` for j = 2 .. bins,
  then ``p == 1`` exactly (``bins`` a power of two, so ``p * bins`` is exact and every edge is
  exact). Grouping keeps the order of scores in different groups, so pooled AUROC and AP are off
  only through pairs of pixels inside one group; :func:`ranking_from_histograms` returns them with
  a **proven bound** on that error (see there). :func:`threshold_histogram` merges the two lowest
  groups so that level ``m`` means exactly ``p >= m / bins``: best F1 and PR curves from it are
  exact at those thresholds.
- :func:`score_histogram` (training, benchmarks) puts ``p`` in level ``round(p * (bins - 1))``: exact
  for maps quantised to ``bins`` levels (e.g. 8-bit maps with ``bins=256``), approximate otherwise.
"""

from __future__ import annotations

import base64
import math
import zlib
from dataclasses import dataclass

import numpy as np

DEFAULT_BINS = 256


@dataclass(frozen=True)
class Confusion:
    """Pixel counts of the binary confusion matrix (positive = changed)."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0

    @classmethod
    def zero(cls) -> Confusion:
        return cls(0, 0, 0, 0)

    def __add__(self, other: Confusion) -> Confusion:
        if not isinstance(other, Confusion):
            return NotImplemented
        return Confusion(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn)

    @property
    def total(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def as_dict(self) -> dict[str, int]:
        return {"tp": self.tp, "fp": self.fp, "fn": self.fn, "tn": self.tn}


def confusion(pred: np.ndarray, label: np.ndarray, valid: np.ndarray | None = None) -> Confusion:
    """Count TP/FP/FN/TN of boolean masks, only where ``valid`` is True (all pixels if None)."""
    pred = _as_mask(pred, "pred")
    label = _as_mask(label, "label")
    _check_same_shape(pred, label, "pred", "label")
    if valid is None:
        valid = np.ones(label.shape, bool)
    else:
        valid = _as_mask(valid, "valid")
        _check_same_shape(valid, label, "valid", "label")
    predicted_changed = pred & valid
    tp = int(np.count_nonzero(predicted_changed & label))
    fp = int(np.count_nonzero(predicted_changed)) - tp
    fn = int(np.count_nonzero(label & valid)) - tp
    tn = int(np.count_nonzero(valid)) - tp - fp - fn
    return Confusion(tp, fp, fn, tn)


def scores(conf: Confusion) -> dict[str, float]:
    """``iou, f1, precision, recall`` (change class), ``oa``, ``kappa``, ``miou``, ``mf1``."""
    if conf.total == 0:
        return dict.fromkeys(("iou", "f1", "precision", "recall", "oa", "kappa", "miou", "mf1"), math.nan)
    tp, fp, fn, tn = conf.tp, conf.fp, conf.fn, conf.tn
    iou_change, iou_unchanged = _ratio(tp, tp + fp + fn), _ratio(tn, tn + fn + fp)
    f1_change, f1_unchanged = _ratio(2 * tp, 2 * tp + fp + fn), _ratio(2 * tn, 2 * tn + fn + fp)
    return {
        "iou": iou_change,
        "f1": f1_change,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "oa": (tp + tn) / conf.total,
        "kappa": _kappa(conf),
        "miou": (iou_change + iou_unchanged) / 2,
        "mf1": (f1_change + f1_unchanged) / 2,
    }


def auroc(prob: np.ndarray, label: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); None for one class."""
    return _pixel_ranking(prob, label)[0].auroc()


def average_precision(prob: np.ndarray, label: np.ndarray) -> float | None:
    """Step-wise AP as in scikit-learn: ``sum((R_k - R_{k-1}) * P_k)``; None for one class."""
    return _pixel_ranking(prob, label)[0].ap()


def best_f1_threshold(prob: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """The threshold ``t`` (one of the probabilities) maximising F1 of ``prob >= t``, and that F1.

    Ties go to the highest such threshold. If the label has no change the best is predicting
    nothing: the threshold is then the next float above ``prob.max()`` and F1 is 1.0.
    """
    ranking, values = _pixel_ranking(prob, label)
    return _best_f1_of_pixels(ranking, values)


def ranking_scores(prob: np.ndarray, label: np.ndarray) -> dict:
    """``auroc``, ``ap``, ``best_f1_threshold`` and ``best_f1`` of one map, exactly as :func:`auroc`,
    :func:`average_precision` and :func:`best_f1_threshold` give them, from one ranking of its
    scores (the engine computes them for every pair)."""
    ranking, values = _pixel_ranking(prob, label)
    threshold, best = _best_f1_of_pixels(ranking, values)
    return {"auroc": ranking.auroc(), "ap": ranking.ap(), "best_f1_threshold": threshold, "best_f1": best}


def pr_curve(prob: np.ndarray, label: np.ndarray, n: int = 101) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, precision, recall)`` at ``n`` evenly spaced thresholds in [0, 1], for plots.

    Probabilities are quantised to the ``n`` levels first (see the module docstring).
    """
    positive_hist, negative_hist = score_histogram(prob, label, bins=n)
    return pr_curve_from_histograms(positive_hist, negative_hist)


def score_histogram(
    prob: np.ndarray,
    label: np.ndarray,
    bins: int = DEFAULT_BINS,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-level counts of changed and unchanged pixels; add them up across pairs to pool."""
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    prob, label = _scored_pixels(prob, label, valid)
    levels = np.rint(prob.astype(np.float64).ravel() * (bins - 1)).astype(np.int64)
    label = label.ravel()
    positive_hist = np.bincount(levels[label], minlength=bins)
    negative_hist = np.bincount(levels[~label], minlength=bins)
    return positive_hist, negative_hist


RANKING_BINS = 4096  # stored packed (pack_counts); keeps the stated AP bound near 1e-3 on small runs


def ranking_histogram(
    prob: np.ndarray,
    label: np.ndarray,
    bins: int = RANKING_BINS,
    valid: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of changed / unchanged pixels in ``bins + 2`` score groups (see the module docstring).

    Group 0 holds ``p == 0``, group ``bins + 1`` holds ``p == 1`` (each a single score, so truly
    tied), group ``j`` in 1 .. bins holds ``0 < p`` with ``floor(p * bins) == j - 1``.
    """
    if bins < 1 or bins & (bins - 1):
        raise ValueError(f"bins must be a power of two, got {bins}")
    prob, label = _scored_pixels(prob, label, valid)
    prob = prob.ravel() if prob.dtype in (np.float32, np.float64) else prob.astype(np.float64).ravel()
    # p * bins is exact in either precision (bins is a power of two) and truncates to floor(p * bins):
    # + 1 for p > 0 puts 0 < p < 1 in 1 .. bins and p == 1 in bins + 1; p == 0 stays in 0
    codes = (prob * bins).astype(np.intp)
    codes += prob > 0
    codes *= 2
    codes += label.ravel()  # the group's slot for changed (odd) or unchanged (even) pixels
    counts = np.bincount(codes, minlength=2 * (bins + 2)).reshape(bins + 2, 2)
    return counts[:, 1].copy(), counts[:, 0].copy()


PACKED_PREFIX = "u32z:"  # little-endian uint32 counts, zlib-compressed, base64


def pack_counts(counts: np.ndarray) -> str:
    """Histogram counts as one short JSON-safe string (``PACKED_PREFIX`` + base64 of the zlib-compressed
    little-endian uint32 counts): a stored result's 2 x 4,098 groups take about 1 kB instead of
    some 30 kB of JSON numbers, which every write, cache entry and leaderboard read paid for."""
    counts = np.asarray(counts)
    if counts.ndim != 1 or (counts.size and (counts.min() < 0 or counts.max() > np.iinfo(np.uint32).max)):
        raise ValueError("counts must be a 1-D array of integers in [0, 2**32)")
    data = zlib.compress(counts.astype("<u4").tobytes(), 1)
    return PACKED_PREFIX + base64.b64encode(data).decode("ascii")


def unpack_counts(value) -> np.ndarray:
    """The int64 counts of :func:`pack_counts`'s string, or of a plain list (results stored before)."""
    if isinstance(value, str):
        if not value.startswith(PACKED_PREFIX):
            raise ValueError("not a packed histogram")
        data = zlib.decompress(base64.b64decode(value[len(PACKED_PREFIX) :]))
        return np.frombuffer(data, "<u4").astype(np.int64)
    return np.asarray(value, np.int64)


def threshold_histogram(hist: np.ndarray) -> np.ndarray:
    """A :func:`ranking_histogram` with its two lowest groups merged: ``bins + 1`` levels where level
    ``m`` holds ``m / bins <= p < (m + 1) / bins`` (the top level ``p == 1``). So predicting
    ``level >= m`` is exactly ``p >= m / bins``, the thresholds :func:`best_f1_from_histograms` and
    :func:`pr_curve_from_histograms` report for ``bins + 1`` levels."""
    hist = np.asarray(hist, np.int64)
    return np.concatenate([[hist[0] + hist[1]], hist[2:]])


def ranking_from_histograms(
    positive_hist: np.ndarray, negative_hist: np.ndarray, exact_groups: tuple[int, ...] = (0, -1)
) -> dict[str, float | None]:
    """Pooled ``auroc`` and ``ap`` from grouped counts, each with a proven bound on its error
    (``auroc_bound``, ``ap_bound``) against the exact value on the ungrouped scores.

    Groups must keep the order of scores (any score in a higher group is higher); ``exact_groups``
    name groups that hold one score only (for :func:`ranking_histogram` the ``p == 0`` and ``p == 1``
    groups; pass ``()`` for :func:`score_histogram`, whose levels are intervals). The bounds:

    - AUROC counts a (changed, unchanged) pixel pair as 1, 1/2 or 0; pairs in different groups are
      ordered as the scores are, pairs inside a group count 1/2 where the exact value is 0, 1/2
      or 1. So ``|error| <= 1/2 * sum_k pos_k * neg_k / (P * N)`` over groups that are not exact.
    - AP (scikit-learn's step-wise sum) is the mean over changed pixels of the precision at that
      pixel's score. For a changed pixel in group k, with ``T, F`` changed / unchanged pixels in
      higher groups, that precision is ``(T + a) / (T + F + a + b)`` for some ``1 <= a <= pos_k``,
      ``0 <= b <= neg_k``: at least ``lo = (T + 1) / (T + F + 1 + neg_k)``, at most
      ``hi = (T + pos_k) / (T + F + pos_k)``; the histogram uses ``(T + pos_k) / (T + F + pos_k + neg_k)``
      (``mid``), which lies in between. So ``|error| <= sum_k pos_k / P * max(hi - mid, mid - lo)``.

    Every value is None when either class is absent.
    """
    positives, negatives = _descending(positive_hist), _descending(negative_hist)
    total_positive, total_negative = int(positives.sum()), int(negatives.sum())
    if total_positive == 0 or total_negative == 0:
        return {"auroc": None, "ap": None, "auroc_bound": None, "ap_bound": None}
    grouped = np.ones(len(positives), bool)
    for group in exact_groups:
        grouped[len(positives) - 1 - (group % len(positives))] = False  # indices are into the ascending histogram
    pos, neg = positives.astype(np.float64), negatives.astype(np.float64)
    auroc_bound = 0.5 * float(np.dot(pos[grouped], neg[grouped])) / (total_positive * total_negative)
    higher_tp, higher_fp = np.cumsum(pos) - pos, np.cumsum(neg) - neg
    mid = np.divide(higher_tp + pos, higher_tp + higher_fp + pos + neg, out=np.ones(len(pos)), where=pos > 0)
    lo = np.divide(higher_tp + 1, higher_tp + higher_fp + 1 + neg, out=np.ones(len(pos)), where=pos > 0)
    hi = np.divide(higher_tp + pos, higher_tp + higher_fp + pos, out=np.ones(len(pos)), where=pos > 0)
    spread = np.where(grouped & (pos > 0), np.maximum(hi - mid, mid - lo), 0.0)
    ranking, _ = _Ranking.of_groups(positives, negatives)
    return {
        "auroc": ranking.auroc(),
        "ap": ranking.ap(),
        "auroc_bound": auroc_bound,
        "ap_bound": float(np.dot(pos / total_positive, spread)),
    }


def auroc_from_histograms(positive_hist: np.ndarray, negative_hist: np.ndarray) -> float | None:
    """AUROC from :func:`score_histogram` counts (each level is one group of tied scores)."""
    return _Ranking.of_groups(_descending(positive_hist), _descending(negative_hist))[0].auroc()


def ap_from_histograms(positive_hist: np.ndarray, negative_hist: np.ndarray) -> float | None:
    """Average precision from :func:`score_histogram` counts."""
    return _Ranking.of_groups(_descending(positive_hist), _descending(negative_hist))[0].ap()


def best_f1_from_histograms(positive_hist: np.ndarray, negative_hist: np.ndarray) -> tuple[float, float]:
    """Best ``(threshold, f1)`` over the histogram's levels (threshold = ``level / (bins - 1)``).

    If there is no positive pixel, predicting nothing is best: ``(inf, 1.0)`` is not JSON-safe,
    so the threshold returned is ``1.0 + 1 / (bins - 1)``, one level above the top.
    """
    bins = len(positive_hist)
    ranking, groups = _Ranking.of_groups(_descending(positive_hist), _descending(negative_hist))
    if ranking.total_changed == 0:
        return 1.0 + 1.0 / (bins - 1), 1.0
    position, f1 = ranking.best_f1()
    return (bins - 1 - int(groups[position])) / (bins - 1), f1


def confusion_at_threshold(positive_hist: np.ndarray, negative_hist: np.ndarray, threshold: float) -> Confusion:
    """The confusion of predicting ``level >= threshold * (levels - 1)`` (the levels' thresholds as
    :func:`best_f1_from_histograms` reports them): on a :func:`threshold_histogram` exactly the mask
    ``p >= threshold`` at every threshold on its grid ``m / bins``."""
    first = max(math.ceil(threshold * (len(positive_hist) - 1) - 1e-9), 0)
    tp, fp = int(np.sum(positive_hist[first:])), int(np.sum(negative_hist[first:]))
    return Confusion(tp, fp, int(np.sum(positive_hist)) - tp, int(np.sum(negative_hist)) - fp)


def pr_curve_from_histograms(
    positive_hist: np.ndarray, negative_hist: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, precision, recall)`` for predicting ``level >= k``, k = 0 .. bins-1."""
    bins = len(positive_hist)
    positive_hist = np.asarray(positive_hist, np.int64)
    negative_hist = np.asarray(negative_hist, np.int64)
    tp = np.cumsum(positive_hist[::-1])[::-1]
    fp = np.cumsum(negative_hist[::-1])[::-1]
    total_positive = int(positive_hist.sum())
    precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1), 1.0)
    recall = tp / total_positive if total_positive else np.ones(bins)
    thresholds = np.arange(bins) / (bins - 1)
    return thresholds, precision, recall


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 1.0


def _kappa(conf: Confusion) -> float:
    total = conf.total
    observed = (conf.tp + conf.tn) / total
    predicted_changed, actual_changed = conf.tp + conf.fp, conf.tp + conf.fn
    chance = (predicted_changed * actual_changed + (total - predicted_changed) * (total - actual_changed)) / (
        total * total
    )
    if chance == 1.0:
        return 1.0
    return (observed - chance) / (1.0 - chance)


def _as_mask(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype == bool:
        return array
    if np.issubdtype(array.dtype, np.integer):
        return array != 0
    raise TypeError(f"{name} must be a boolean (or integer 0/1) mask, got {array.dtype}; threshold probabilities first")


def _as_prob(prob: np.ndarray) -> np.ndarray:
    prob = np.asarray(prob)
    if not np.issubdtype(prob.dtype, np.floating):
        raise TypeError(f"prob must be a float array of probabilities, got {prob.dtype}")
    # NaN propagates through min and max, and fails both comparisons: two passes, no temporary array
    if prob.size and not (prob.min() >= 0.0 and prob.max() <= 1.0):
        raise ValueError("prob must hold probabilities in [0, 1] without NaN")
    return prob


def _scored_pixels(prob, label, valid) -> tuple[np.ndarray, np.ndarray]:
    """Checked probabilities and labels, restricted to the valid pixels when a valid mask is given."""
    prob = _as_prob(prob)
    label = _as_mask(label, "label")
    _check_same_shape(prob, label, "prob", "label")
    if valid is not None:
        valid = _as_mask(valid, "valid")
        _check_same_shape(valid, label, "valid", "label")
        prob, label = prob[valid], label[valid]
    return prob, label


def _check_same_shape(x: np.ndarray, y: np.ndarray, x_name: str, y_name: str) -> None:
    if x.shape != y.shape:
        raise ValueError(f"{x_name} has shape {x.shape} but {y_name} has shape {y.shape}")


class _Ranking:
    """The groups of tied scores that hold changed pixels, highest score first, with what AUROC, AP and
    best F1 need of each. Groups of unchanged pixels alone add nothing to AUROC or AP and never hold
    the first best F1 (the changed group above has the same hits and fewer false alarms): left out.

    Made from each group's changed pixels and the unchanged pixels below and tied with it; the
    running sums (hits, false alarms) follow from those."""

    def __init__(self, changed: np.ndarray, unchanged_below: np.ndarray, unchanged_tied: np.ndarray,
                 total_unchanged: int):  # fmt: skip
        self.changed, self.unchanged_below, self.unchanged_tied = changed, unchanged_below, unchanged_tied
        self.total_changed, self.total_unchanged = int(changed.sum()), total_unchanged
        self.hits = np.cumsum(changed)  # changed pixels at or above the group: true positives at its threshold
        self.false_alarms = total_unchanged - unchanged_below  # unchanged pixels at or above it

    @classmethod
    def of_groups(cls, positives: np.ndarray, negatives: np.ndarray) -> tuple[_Ranking, np.ndarray]:
        """From counts of changed / unchanged pixels per group, highest score first (a histogram);
        with the positions of the kept groups in it."""
        kept = np.flatnonzero(positives)
        total_unchanged = int(negatives.sum())
        below = total_unchanged - np.cumsum(negatives)[kept]
        return cls(positives[kept], below, negatives[kept], total_unchanged), kept

    def auroc(self) -> float | None:
        """Changed / unchanged pixel pairs ordered right (a tie counts half), over all such pairs."""
        if self.total_changed == 0 or self.total_unchanged == 0:
            return None
        won = np.dot(self.changed, self.unchanged_below) + 0.5 * np.dot(self.changed, self.unchanged_tied)
        return float(won) / (self.total_changed * self.total_unchanged)

    def ap(self) -> float | None:
        """Recall gained at each group times the precision there (every kept group predicts a pixel)."""
        if self.total_changed == 0 or self.total_unchanged == 0:
            return None
        precision = self.hits / (self.hits + self.false_alarms)
        return float(np.dot(self.changed / self.total_changed, precision))

    def best_f1(self) -> tuple[int, float]:
        """Position of the first (highest) group whose threshold gives the largest F1, and that F1."""
        f1 = 2 * self.hits / (self.hits + self.total_changed + self.false_alarms)
        position = int(np.argmax(f1))
        return position, float(f1[position])


def _pixel_ranking(prob: np.ndarray, label: np.ndarray) -> tuple[_Ranking, np.ndarray]:
    """A map's :class:`_Ranking` and each group's score; the unchanged pixels are only counted below
    and at each changed score (two value sorts and a binary search: no per-pixel running sums)."""
    prob = _as_prob(prob)
    label = _as_mask(label, "label")
    _check_same_shape(prob, label, "prob", "label")
    if prob.size == 0:
        raise ValueError("prob and label are empty")
    flat, label = prob.ravel(), label.ravel()
    changed, unchanged = np.sort(flat[label]), np.sort(flat[~label])
    starts = np.flatnonzero(np.concatenate(([changed.size > 0], changed[1:] != changed[:-1])))
    values = changed[starts]  # lowest first here, reversed below
    below = np.searchsorted(unchanged, values, "left")
    tied = np.searchsorted(unchanged, values, "right") - below
    counts = np.diff(np.append(starts, changed.size))[::-1]
    ranking = _Ranking(counts, below[::-1], tied[::-1], unchanged.size)
    return ranking, values[::-1] if values.size else unchanged[-1:]


def _best_f1_of_pixels(ranking: _Ranking, values: np.ndarray) -> tuple[float, float]:
    if ranking.total_changed == 0:  # predicting nothing is right: above the highest score
        return float(np.nextafter(values[0], np.inf)), 1.0
    position, f1 = ranking.best_f1()
    return float(values[position]), f1


def _descending(hist: np.ndarray) -> np.ndarray:
    return np.asarray(hist, np.int64)[::-1]
