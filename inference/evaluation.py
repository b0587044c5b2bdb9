"""Everything measured about one predicted map against its label, as one JSON-safe dict.

Keys (change class unless prefixed `m`): `tp fp fn tn`, `iou f1 precision recall oa kappa miou mf1`,
`auroc ap best_f1 best_f1_threshold`, `object_precision object_recall object_f1`,
`fp_area` (false-positive pixels / valid pixels), `changed_fraction` (predicted change / valid
pixels), `hist_pos hist_neg` (256-bin histograms of the probability over changed / unchanged
pixels, summed over a dataset for pooled AUROC and AP). Without a label only `changed_fraction`.
Pixels outside `valid` (B not covered by aligned A) are left out of every count.
"""

import numpy as np

from inference.numbers import finite_or_none

HISTOGRAM_BINS = 256


def pair_metrics(prob: np.ndarray, mask: np.ndarray, label: np.ndarray | None, valid: np.ndarray | None = None) -> dict:
    from inference import metrics

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
    result["auroc"] = finite_or_none(metrics.auroc(prob_v, label_v))
    result["ap"] = finite_or_none(metrics.average_precision(prob_v, label_v))
    threshold, best_f1 = metrics.best_f1_threshold(prob_v, label_v)
    result["best_f1_threshold"], result["best_f1"] = finite_or_none(threshold), finite_or_none(best_f1)
    objects = metrics.object_scores(mask & valid if valid is not None else mask, label)
    result.update(object_precision=objects["precision"], object_recall=objects["recall"], object_f1=objects["f1"])
    result["fp_area"] = conf.fp / valid_count if valid_count else 0.0
    pos, neg = metrics.score_histogram(prob, label, bins=HISTOGRAM_BINS, valid=valid)
    result["hist_pos"], result["hist_neg"] = [int(v) for v in pos], [int(v) for v in neg]
    return result
