"""Everything measured about one predicted map against its label, as one JSON-safe dict.

Keys (change class unless prefixed `m`): `tp fp fn tn`, `iou f1 precision recall oa kappa miou mf1`,
`auroc ap best_f1 best_f1_threshold`, `object_precision object_recall object_f1`,
`fp_area` (false-positive pixels / valid pixels), `changed_fraction` (predicted change / valid
pixels), `has_change` (the label marks at least one valid pixel changed; None without valid
pixels), `false_alarm` (only on pairs without change, else None: `fp_area > MIN_FALSE_ALARM_AREA`),
`hist_pos hist_neg` (counts of changed / unchanged pixels in the `hist_bins + 2` score groups of
`inference.metrics.ranking_histogram`, packed by `inference.metrics.pack_counts` (read them with
`unpack_counts`), summed over a dataset for pooled AUROC/AP with a proven error bound, best F1 and
the PR curve). Without a label only `changed_fraction`.
Pixels outside `valid` (B not covered by aligned A) are left out of every count, objects included.
"""

import numpy as np

from inference.numbers import finite_or_none

# A pair without change is a false alarm when more than this share of its valid pixels is predicted changed.
MIN_FALSE_ALARM_AREA = 0.001
# Bump when a stored per-pair figure changes meaning, so cached results computed before are not reused.
METRICS_VERSION = 2


def has_change(metrics: dict) -> bool | None:
    """Whether a labelled result's label marks any valid pixel changed (None: unlabelled or no valid pixel)."""
    counts = [metrics.get(name) for name in ("tp", "fp", "fn", "tn")]
    if None in counts or sum(counts) == 0:
        return None
    return counts[0] + counts[2] > 0


def false_alarm(metrics: dict) -> bool | None:
    """On a pair without change: whether more than `MIN_FALSE_ALARM_AREA` of its valid pixels are
    predicted changed. None on any other pair. Reads only `tp fp fn tn`, so it also works on results
    stored before this key existed."""
    if has_change(metrics) is not False:
        return None
    valid = metrics["tp"] + metrics["fp"] + metrics["fn"] + metrics["tn"]
    return metrics["fp"] / valid > MIN_FALSE_ALARM_AREA


def pair_metrics(prob: np.ndarray, mask: np.ndarray, label: np.ndarray | None, valid: np.ndarray | None = None) -> dict:
    from inference import metrics, object_metrics

    valid_count = int(valid.sum()) if valid is not None else mask.size
    predicted = int((mask & valid).sum()) if valid is not None else int(mask.sum())
    result = {"changed_fraction": predicted / valid_count if valid_count else 0.0}
    if label is None:
        return result
    if valid is not None:
        prob_v, label_v = prob[valid], label[valid]
    else:
        prob_v, label_v = prob.ravel(), label.ravel()
    conf = metrics.confusion(mask, label, valid)
    result.update(tp=conf.tp, fp=conf.fp, fn=conf.fn, tn=conf.tn)
    result.update(metrics.scores(conf))
    result.update({key: finite_or_none(value) for key, value in metrics.ranking_scores(prob_v, label_v).items()})
    objects = object_metrics.object_scores(mask, label, valid=valid)
    result.update(object_precision=objects["precision"], object_recall=objects["recall"], object_f1=objects["f1"])
    result["fp_area"] = conf.fp / valid_count if valid_count else 0.0
    result["has_change"] = has_change(result)
    result["false_alarm"] = false_alarm(result)
    pos, neg = metrics.ranking_histogram(prob, label, bins=metrics.RANKING_BINS, valid=valid)
    result["hist_bins"] = metrics.RANKING_BINS
    result["hist_pos"], result["hist_neg"] = metrics.pack_counts(pos), metrics.pack_counts(neg)
    return result
