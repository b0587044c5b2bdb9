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


def paired_comparison(
    candidate: Sequence[float], baseline: Sequence[float], *, seed: int = 0, tie_tolerance: float = TIE_TOLERANCE
) -> dict:
    """Candidate against baseline on the same pairs: wins/ties/losses, CI of the mean difference,
    and the Wilcoxon signed-rank p-value (None when every difference is a tie)."""
    from scipy import stats

    a = np.asarray(candidate, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired comparison needs the same pairs for both detectors")
    diff = a - b
    ties = np.abs(diff) <= tie_tolerance
    result = {
        "n": int(diff.size),
        "wins": int(((diff > 0) & ~ties).sum()),
        "ties": int(ties.sum()),
        "losses": int(((diff < 0) & ~ties).sum()),
        "mean_difference": float(diff.mean()) if diff.size else None,
        "ci": bootstrap_ci(diff, seed=seed),
        "wilcoxon_p": None,
    }
    if diff.size and not ties.all():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result["wilcoxon_p"] = float(stats.wilcoxon(diff[~ties]).pvalue) if (~ties).sum() > 0 else None
    return result


def mask_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """Agreement of two predicted masks; two empty masks agree fully (1.0)."""
    union = np.logical_or(mask_a, mask_b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(mask_a, mask_b).sum() / union)


def consensus_map(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Fraction of detectors that call each pixel changed (float32 in [0, 1])."""
    return np.mean(np.stack([m.astype(np.float32) for m in masks]), axis=0)


def percentile(values: Sequence[float], q: float) -> float | None:
    data = [v for v in values if v is not None]
    return float(np.percentile(data, q)) if data else None
