"""Uncertainty on the ranking key: pair-level bootstrap intervals of pooled F1 and IoU, paired
bootstrap tests between detectors (Holm-adjusted over every pair of detectors) and rank groups.

A pooled figure comes from one confusion matrix summed over the pairs, so it is resampled as such:
resample `b` draws `n` of the detector's `n` pairs (sorted by pair id) with replacement,
`np.random.default_rng(seed).integers(0, n, size=n)` once per resample in order, sums their TP, FP
and FN and takes F1 = 2TP / (2TP + FP + FN) and IoU = TP / (TP + FP + FN) (1.0 when the denominator
is 0, as `inference.metrics.scores`). The interval is the percentile one (`np.percentile`, linear).
Two detectors are compared on the pairs both scored with the same resamples (the pairs are shared),
so the spread of the difference accounts for how the two co-vary from pair to pair.

The p-value of a difference is two-sided from the same resamples:
`min(1, 2 * min(share of differences <= 0, share >= 0))` (0 when no resample reaches 0: below
1 / resamples). It is dual to the percentile interval: p < alpha exactly when the (1 - alpha)
interval of the difference leaves 0 out. p-values are Holm-adjusted over all pairs of detectors.

Rank groups: detectors in ranking order; a detector's rank range spans the ranks of itself and of every
detector it is not separated from (Holm-adjusted p >= alpha), so "1-2" means "could be first or second".
Plain numpy, no Django: tested against an independent bootstrap in tests/inference.
"""

from collections.abc import Sequence

import numpy as np

from inference.statistics import CONFIDENCE, N_RESAMPLES, holm_adjust

RANKED_METRICS = ("f1", "iou")
BLOCK_CELLS = 2_000_000  # resample weights held at once (resamples x pairs): about 16 MB
FAMILY = "all pairs of ranked detectors"
RULE = (
    "a detector's rank range spans the ranks of itself and of every detector whose paired bootstrap test "
    "against it is not significant after Holm's adjustment (p_holm >= alpha)"
)


def _scores(sums: np.ndarray) -> dict[str, np.ndarray]:
    """F1 and IoU from summed counts (last axis: tp, fp, fn); 1.0 where nothing is positive."""
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 1.0)
        iou = np.where(tp + fp + fn > 0, tp / (tp + fp + fn), 1.0)
    return {"f1": f1, "iou": iou}


def resampled_scores(counts: np.ndarray, *, seed: int, resamples: int = N_RESAMPLES) -> dict[str, np.ndarray]:
    """`counts` (pairs x detectors x [tp, fp, fn]) -> per metric, a (resamples x detectors) array.

    The resample weights (how often each pair is drawn) are built a block of resamples at a time
    and multiplied with the counts matrix, so memory stays bounded whatever the number of pairs."""
    counts = np.asarray(counts, dtype=np.float64)
    n, k = counts.shape[0], counts.shape[1]
    if n == 0:
        raise ValueError("a bootstrap needs at least one pair")
    flat = counts.reshape(n, k * 3)
    rng = np.random.default_rng(seed)
    block = max(1, min(resamples, BLOCK_CELLS // n))
    sums = np.empty((resamples, k * 3))
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        drawn = np.stack([rng.integers(0, n, size=n) for _ in range(rows)])
        drawn += (np.arange(rows) * n)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
        sums[start : start + rows] = weights @ flat
    return _scores(sums.reshape(resamples, k, 3))


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> list[float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_p(differences: np.ndarray) -> float:
    """Two-sided p-value of a difference from its bootstrap distribution (see the module's docstring)."""
    below, above = np.mean(differences <= 0), np.mean(differences >= 0)
    return float(min(1.0, 2 * min(below, above)))


def rank_ranges(order: Sequence[str], separated: dict[tuple[str, str], bool]) -> dict[str, tuple[int, int]]:
    """`order`: best first; `separated[(a, b)]` (either order): whether the test separates a and b."""
    ranges = {}
    for name in order:
        tied = [p for p, other in enumerate(order, start=1) if other == name or not _separated(separated, name, other)]
        ranges[name] = (min(tied), max(tied))
    return ranges


def _separated(separated: dict, a: str, b: str) -> bool:
    return bool(separated.get((a, b), separated.get((b, a), False)))


def rank_group(low: int, high: int) -> str:
    return str(low) if low == high else f"{low}-{high}"


def _stack(per_pair: dict[str, dict], names: Sequence[str], keys: Sequence) -> np.ndarray:
    return np.array([[per_pair[name][key] for name in names] for key in keys], dtype=np.float64).reshape(
        len(keys), len(names), 3
    )


def ranking_uncertainty(
    per_pair: dict[str, dict], order: Sequence[str], *, seed: int, resamples: int = N_RESAMPLES,
    confidence: float = CONFIDENCE,
) -> dict:  # fmt: skip
    """Intervals, paired tests and rank groups of the detectors in `order` (best first).

    `per_pair`: `{detector: {pair key: (tp, fp, fn)}}` at the run's threshold. Detectors with the same
    pairs share one pass over the resamples; a couple whose pairs differ is resampled on the pairs both
    scored."""
    order = [name for name in order if per_pair.get(name)]
    samples = {}  # (pair keys) -> (names, resampled scores)
    for keys in {tuple(sorted(per_pair[name])) for name in order}:
        names = [name for name in order if tuple(sorted(per_pair[name])) == keys]
        samples[keys] = (names, resampled_scores(_stack(per_pair, names, keys), seed=seed, resamples=resamples))
    detectors = {}
    for keys, (names, scores) in samples.items():
        for index, name in enumerate(names):
            detectors[name] = {
                f"{metric}_ci": percentile_interval(scores[metric][:, index], confidence) for metric in RANKED_METRICS
            }
            detectors[name]["n_pairs"] = len(keys)
    comparisons = [
        _compare(per_pair, samples, first, second, seed=seed, resamples=resamples, confidence=confidence)
        for i, first in enumerate(order)
        for second in order[i + 1 :]
    ]
    adjusted = holm_adjust({index: c["p"] for index, c in enumerate(comparisons)})
    alpha = 1 - confidence
    for index, comparison in enumerate(comparisons):
        comparison["p_holm"] = adjusted[index]
        comparison["separated"] = adjusted[index] is not None and adjusted[index] < alpha
    separated = {(c["a"], c["b"]): c["separated"] for c in comparisons}
    for name, (low, high) in rank_ranges(order, separated).items():
        detectors[name] |= {
            "rank_range": [low, high],
            "rank_group": rank_group(low, high),
            "tied_with": [other for other in order if other != name and not _separated(separated, name, other)],
        }
    return {
        "method": "pair-level percentile bootstrap of pooled F1 and IoU; paired bootstrap tests of the differences",
        "resamples": resamples,
        "seed": seed,
        "confidence": confidence,
        "alpha": alpha,
        "family": FAMILY,
        "adjustment": "Holm",
        "rule": RULE,
        "order": list(order),
        "detectors": detectors,
        "comparisons": comparisons,
    }


def _compare(per_pair, samples, first, second, *, seed, resamples, confidence) -> dict:
    """`first - second` on the pairs both scored: F1 and IoU differences with percentile intervals and the
    p-value of the F1 difference (the ranking key)."""
    shared = tuple(sorted(per_pair[first].keys() & per_pair[second].keys()))
    comparison = {"a": first, "b": second, "n_pairs": len(shared)}
    if not shared:
        return comparison | {"f1_difference": None, "f1_difference_ci": None, "iou_difference": None,
                             "iou_difference_ci": None, "p": None}  # fmt: skip
    names, scores = samples.get(shared, (None, None))
    if names is None or first not in names or second not in names:
        names = [first, second]
        scores = resampled_scores(_stack(per_pair, names, shared), seed=seed, resamples=resamples)
    observed = _scores(_stack(per_pair, [first, second], shared).sum(axis=0))
    for metric in RANKED_METRICS:
        differences = scores[metric][:, names.index(first)] - scores[metric][:, names.index(second)]
        comparison[f"{metric}_difference"] = float(observed[metric][0] - observed[metric][1])
        comparison[f"{metric}_difference_ci"] = percentile_interval(differences, confidence)
        if metric == "f1":
            comparison["p"] = bootstrap_p(differences)
    return comparison
