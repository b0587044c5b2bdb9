"""Statistics over pairs: confidence intervals, paired comparison, agreement between detectors.

All functions take plain sequences of per-pair numbers so they can be tested on their own.
"""

import warnings
from collections.abc import Sequence

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000
TIE_TOLERANCE = 1e-3


def bootstrap_ci(
    values: Sequence[float], *, seed: int = 0, confidence: float = CONFIDENCE, n_resamples: int = N_RESAMPLES
) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean over pairs (`scipy.stats.bootstrap`).

    None when there are fewer than two values; a zero-width interval when all values are equal
    (resampling cannot move the mean).
    """
    from scipy import stats

    data = np.asarray([v for v in values if v is not None], dtype=float)
    if data.size < 2:
        return None
    if np.allclose(data, data[0]):
        return float(data[0]), float(data[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = stats.bootstrap(
            (data,),
            np.mean,
            confidence_level=confidence,
            n_resamples=n_resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


WILCOXON_TEST = (
    "Wilcoxon signed-rank, two-sided (scipy.stats.wilcoxon, zero_method='wilcox': pairs where both "
    "detectors score exactly the same are left out, as scipy does); Holm-adjusted over the detectors "
    "compared with one baseline"
)
SMALL_SAMPLE = 20  # below this, nominal 95% intervals cover noticeably less than 95% of the time


def paired_comparison(
    candidate: Sequence[float], baseline: Sequence[float], *, seed: int = 0, tie_tolerance: float = TIE_TOLERANCE
) -> dict:
    """Candidate against baseline on the same pairs: wins/ties/losses (|difference| <= `tie_tolerance`
    counts as a tie, for the counts only), the mean difference with its bootstrap CI, and scipy's
    Wilcoxon signed-rank p-value on the values as they are (None when the two are identical)."""
    a = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same pairs for both detectors")
    diff = a - b
    ties = np.abs(diff) <= tie_tolerance
    return {
        "n": int(diff.size),
        "wins": int(((diff > 0) & ~ties).sum()),
        "ties": int(ties.sum()),
        "losses": int(((diff < 0) & ~ties).sum()),
        "mean_difference": float(diff.mean()) if diff.size else None,
        "ci": bootstrap_ci(diff, seed=seed),
        "wilcoxon_p": _wilcoxon_p(a, b),
        "test": WILCOXON_TEST,
        "small_sample": bool(diff.size < SMALL_SAMPLE),
    }


def _wilcoxon_p(a: np.ndarray, b: np.ndarray) -> float | None:
    from scipy import stats

    if not np.any(a != b):
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(stats.wilcoxon(a, b, zero_method="wilcox", alternative="two-sided").pvalue)


def holm_adjust(pvalues: dict) -> dict:
    """Holm's step-down adjustment of a family of p-values (None stays None and is not counted)."""
    ordered = sorted((p, name) for name, p in pvalues.items() if p is not None)
    adjusted, running = {}, 0.0
    for index, (p, name) in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - index) * p))
        adjusted[name] = running
    return {name: adjusted.get(name) for name in pvalues}


def compare_with_baseline(values: dict, baseline: str, *, seed: int = 0) -> dict[str, dict]:
    """Each detector's per-pair values (`{detector: {pair: value}}`) against the baseline's on the pairs
    both scored, with Holm-adjusted p-values (`wilcoxon_p_holm`) over the detectors compared."""
    base = values.get(baseline, {})
    comparisons = {}
    for name, per_pair in values.items():
        shared = sorted(per_pair.keys() & base.keys())
        if name != baseline and shared:
            comparisons[name] = paired_comparison([per_pair[k] for k in shared], [base[k] for k in shared], seed=seed)
    adjusted = holm_adjust({name: c["wilcoxon_p"] for name, c in comparisons.items()})
    for name, comparison in comparisons.items():
        comparison["wilcoxon_p_holm"] = adjusted[name]
    return comparisons


def mask_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Agreement of two predicted masks; two empty masks agree fully (1.0)."""
    union = np.count_nonzero(np.logical_or(mask_a, mask_b))
    if union == 0:
        return 1.0
    return np.count_nonzero(np.logical_and(mask_a, mask_b)) / union


def consensus_map(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Fraction of detectors that call each pixel changed (float32 in [0, 1])."""
    return np.mean(np.stack([m.astype(np.float32) for m in masks]), axis=0)


def percentile(values: Sequence[float], q: float) -> float | None:
    data = [v for v in values if v is not None]
    return float(np.percentile(data, q)) if data else None
