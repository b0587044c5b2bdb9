"""The leaderboard of a run: one row per detector, per-category breakdown, baseline comparison.

Pooled metrics come from one confusion matrix summed over the run's labelled pairs; per-pair means
average each pair's own value over the pairs whose label has change (on a pair without change IoU,
F1 and precision can only be 0 or 1). Both are stored, labelled, with 95% bootstrap CIs of the
per-pair means. Pairs without change get their own figures (`no_change`): the share with a false
alarm and the mean false-positive area.
"""

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from experiments.models import Run
from experiments.reporting.contamination import trained_pairs_scored
from experiments.reporting.ranking import with_ranking
from experiments.runs import result_pictures
from inference.numbers import finite_or_none
from inference.statistics import bootstrap_ci, compare_with_baseline, mask_iou

SCORE_NAMES = ("iou", "f1", "precision", "recall", "oa", "kappa", "miou", "mf1")
PER_PAIR_NAMES = (*SCORE_NAMES, "auroc", "ap", "object_f1", "object_precision", "object_recall", "fp_area")
PR_POINTS = 64
CI_METRICS = ("iou", "f1", "precision", "recall", "fp_area")  # bootstrap CIs cost time: the headline metrics only
CATEGORY_CI_METRICS = ("iou", "f1")


def _pooled(results) -> dict:
    from inference.metrics import Confusion, scores

    labelled = [r for r in results if "tp" in r.metrics]
    if not labelled:
        return {}
    conf = sum(
        (Confusion(r.metrics["tp"], r.metrics["fp"], r.metrics["fn"], r.metrics["tn"]) for r in labelled),
        Confusion.zero(),
    )
    pooled = dict(scores(conf))
    pooled.update(_pooled_ranking(labelled))
    return pooled


def _pooled_ranking(labelled) -> dict:
    """Pooled AUROC and AP with their proven error bounds, oracle best F1 and the PR curve, from the
    summed score histograms. Results whose histograms differ in layout (e.g. served from a cache
    filled by older code) cannot be summed: every figure is then None and `ranking_note` says why."""
    from inference.metrics import ranking_from_histograms, threshold_histogram, unpack_counts

    pos = neg = None  # summed as they are read: one result's arrays at a time, whatever the run's size
    layouts = set()
    for result in labelled:
        positive, negative = unpack_counts(result.metrics["hist_pos"]), unpack_counts(result.metrics["hist_neg"])
        layouts.add((result.metrics.get("hist_bins"), len(positive)))
        if len(layouts) != 1:
            return {
                **dict.fromkeys(("auroc", "ap", "auroc_bound", "ap_bound", "best_f1", "best_f1_threshold")),
                "pr_curve": {},
                "ranking_note": "the results' score histograms differ in layout; pooled AUROC/AP not computed",
            }
        if pos is None:
            pos, neg = np.zeros(len(positive), np.int64), np.zeros(len(negative), np.int64)
        pos += positive
        neg += negative
    if labelled[0].metrics.get("hist_bins") is None:  # legacy: 256 levels round(p * 255), no group is one score
        ranking = ranking_from_histograms(pos, neg, exact_groups=())
    else:
        ranking = ranking_from_histograms(pos, neg)
        pos, neg = threshold_histogram(pos), threshold_histogram(neg)
    pooled = {name: finite_or_none(value) for name, value in ranking.items()}
    pooled.update(_best_f1_from_histograms(pos, neg))
    pooled["pr_curve"] = _pr_curve(pos, neg)
    return pooled


def _best_f1_from_histograms(pos, neg) -> dict:
    from inference.metrics import best_f1_from_histograms

    if pos.sum() == 0:
        return {"best_f1": None, "best_f1_threshold": None}
    threshold, f1 = best_f1_from_histograms(pos, neg)
    return {"best_f1": float(f1), "best_f1_threshold": float(threshold)}


def _pr_curve(pos, neg) -> dict:
    from inference.metrics import pr_curve_from_histograms

    if pos.sum() == 0:
        return {}
    thresholds, precision, recall = pr_curve_from_histograms(pos, neg)
    steps = np.linspace(0, len(pos) - 1, PR_POINTS).astype(int)
    return {
        "threshold": thresholds[steps].round(4).tolist(),
        "precision": precision[steps].round(4).tolist(),
        "recall": recall[steps].round(4).tolist(),
    }


def _per_pair(results, seed: int, ci_metrics) -> tuple[dict, dict]:
    means, cis = {}, {}
    for name in PER_PAIR_NAMES:
        values = [r.metrics.get(name) for r in results if r.metrics.get(name) is not None]
        if values:
            means[name] = float(np.mean(values))
            if name in ci_metrics:
                cis[name] = bootstrap_ci(values, seed=seed)
    return means, cis


def _no_change(results, seed: int) -> tuple[dict, dict]:
    """False alarms on the pairs whose label has no change: the share of those pairs with more than
    `MIN_FALSE_ALARM_AREA` of their valid pixels predicted changed (95% Wilson interval), and their
    mean false-positive area (95% bootstrap interval)."""
    from scipy import stats

    from inference.evaluation import MIN_FALSE_ALARM_AREA, false_alarm

    alarms = [bool(false_alarm(r.metrics)) for r in results]
    areas = [r.metrics["fp_area"] for r in results]
    summary = {
        "n_pairs": len(results),
        "false_alarms": sum(alarms),
        "false_alarm_rate": sum(alarms) / len(alarms) if alarms else None,
        "fp_area": float(np.mean(areas)) if areas else None,
        "min_false_alarm_area": MIN_FALSE_ALARM_AREA,
    }
    cis = {}
    if alarms:
        interval = stats.binomtest(sum(alarms), len(alarms)).proportion_ci(confidence_level=0.95, method="wilson")
        cis["false_alarm_rate"] = (float(interval.low), float(interval.high))
    if len(areas) > 1:
        cis["no_change_fp_area"] = bootstrap_ci(areas, seed=seed)
    return summary, cis


def _summary(results, seed: int, ci_metrics=CI_METRICS) -> dict:
    from inference.evaluation import has_change

    changed = [r for r in results if has_change(r.metrics) is True]
    unchanged = [r for r in results if has_change(r.metrics) is False]
    means, cis = _per_pair(changed, seed, ci_metrics)
    no_change, no_change_cis = _no_change(unchanged, seed)
    return {
        "n_pairs": len(results),
        "n_changed_pairs": len(changed),
        "n_no_change_pairs": len(unchanged),
        "pooled": _pooled(results),
        "per_pair_mean": means,
        "ci": {**cis, **no_change_cis},
        "no_change": no_change,
    }


def detector_row(name: str, results, info: dict, seed: int) -> dict:
    from experiments.runs.measurement import measurement_fields

    return {
        "detector": name,
        **_summary(results, seed),
        # latency (batch 1, n_timed), memory, throughput, input size, precision, worker: see measurement.py
        **measurement_fields(results, info),
        "params": info.get("params"),
        "flops": info.get("flops"),
        "family": info.get("family"),
        "weights": info.get("weights"),
        "weights_sha256": info.get("weights_sha256"),
        "from_cache": sum(1 for r in results if r.from_cache),
        # what its masks were cut at, and why (`experiments.runs.threshold_rules`)
        "threshold": info.get("threshold"),
        "threshold_source": info.get("threshold_source"),
    }


@dataclass(frozen=True)
class DetectorTables:
    """A run's results grouped by detector and by category, with the category summaries and the paired
    comparisons with the baseline: what a leaderboard is built from, at the run's threshold
    (`build_leaderboard`) or at another (`rethreshold`)."""

    by_detector: dict
    categories: dict
    comparisons: dict
    infos: dict
    seed: int

    def row(self, name: str) -> dict:
        row = detector_row(name, self.by_detector.get(name, []), self.infos.get(name, {}), self.seed)
        row["comparison"] = self.comparisons.get(name)
        return row


def detector_tables(results, *, baseline: str, seed: int, infos: dict) -> DetectorTables:
    by_detector, by_category = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for result in results:
        by_detector[result.detector].append(result)
        by_category[result.pair.category or "uncategorised"][result.detector].append(result)
    categories = {
        category: {name: _summary(items, seed, CATEGORY_CI_METRICS) for name, items in per_detector.items()}
        for category, per_detector in sorted(by_category.items())
    }
    return DetectorTables(dict(by_detector), categories, _comparisons(by_detector, baseline, seed), infos, seed)


def _comparisons(by_detector: dict, baseline: str, seed: int) -> dict:
    """Paired IoU comparison with the baseline over the pairs whose label has change (as the means)."""
    from inference.evaluation import has_change

    ious = {
        name: {r.pair_id: r.iou for r in results if r.iou is not None and has_change(r.metrics)}
        for name, results in by_detector.items()
    }
    return compare_with_baseline(ious, baseline, seed=seed)


def _agreement(by_detector: dict) -> tuple[list[dict], dict]:
    """Pairwise IoU of the detectors' predicted masks (useful without labels): the mean per detector
    pair, and each pair's own value (`"a|b" -> {pair id: IoU}`) for sorting pairs by disagreement.
    (Each pair's consensus map is drawn when first shown: `result_pictures`.)"""
    names = sorted(by_detector)
    keys = defaultdict(dict)  # pair id -> {detector: mask key}
    for name, results in by_detector.items():
        for result in results:
            keys[result.pair_id][name] = result.mask_key
    couples = [(first, second) for i, first in enumerate(names) for second in names[i + 1 :]]
    values = {couple: {} for couple in couples}
    for pair_id in sorted(keys):  # one pair's masks in memory at a time
        masks = {name: result_pictures.read_mask(key) for name, key in keys[pair_id].items()}
        for first, second in couples:
            if first in masks and second in masks:
                values[first, second][str(pair_id)] = mask_iou(masks[first], masks[second])
    rows, by_pair = [], {}
    for (first, second), by_pair_id in values.items():
        by_pair[f"{first}|{second}"] = by_pair_id
        mean = float(np.mean(list(by_pair_id.values()))) if by_pair_id else None
        rows.append({"a": first, "b": second, "mean_iou": mean})
    return rows, by_pair


def _compact_histograms(result):
    """A result whose score histograms (4098 groups each) were stored as JSON lists, before they were
    stored packed, with them packed (`inference.metrics.pack_counts`): about 1 kB each instead of some
    30 kB of Python integers, so a run of many thousands of results fits in memory while it is pooled.
    Packed ones are kept as they are and unpacked one at a time when pooled."""
    from inference.metrics import pack_counts

    for name in ("hist_pos", "hist_neg"):
        if isinstance(result.metrics.get(name), list):
            result.metrics[name] = pack_counts(np.asarray(result.metrics[name], np.int64))
    return result


def default_baseline(results, infos: dict, detectors: list[str]) -> str:
    """The baseline when the experiment names none: the classical detector with the best pooled F1 under
    the run's threshold rule (each at its own threshold), else the first detector."""
    from inference.metrics import Confusion, scores

    classical = [name for name in detectors if (infos.get(name) or {}).get("family") == "classical"]
    if not classical:
        return detectors[0]
    sums = {name: Confusion.zero() for name in classical}
    for result in results:
        if result.detector in sums and "tp" in result.metrics:
            m = result.metrics
            sums[result.detector] = sums[result.detector] + Confusion(m["tp"], m["fp"], m["fn"], m["tn"])
    labelled = [name for name in classical if sums[name].total]
    if not labelled:
        return classical[0]
    return max(labelled, key=lambda name: (scores(sums[name])["f1"], -classical.index(name)))


def build_leaderboard(run: Run, failed: dict[str, str] | None = None) -> dict:
    """The run's leaderboard from the detectors that finished; each detector in `failed`
    ({name: reason}) is a row `{"detector": name, "failed": reason}` and its results are left out."""
    experiment = run.experiment
    seed = experiment.seed
    failed = failed or {}
    results = [
        _compact_histograms(r)
        for r in run.results.exclude(detector__in=list(failed)).select_related("pair").iterator(chunk_size=200)
    ]
    infos = run.environment.get("detector_info", {})
    finished = [name for name in experiment.detectors if name not in failed]
    baseline = experiment.baseline_detector or default_baseline(results, infos, finished or experiment.detectors)
    tables = detector_tables(results, baseline=baseline, seed=seed, infos=infos)
    trained_on = trained_pairs_scored(run)
    rows = []
    for name in experiment.detectors:
        if name in failed:
            rows.append({"detector": name, "failed": failed[name]})
            continue
        row = tables.row(name)
        row["trained_on_pairs"] = trained_on.get(name)
        rows.append(row)
    rows, ranking = with_ranking(rows, tables.by_detector, seed=seed)
    labelled = any("tp" in r.metrics for r in results)
    result_pictures.forget_consensus_maps(run.pk)  # drawn again from the detectors that finished now
    by_detector = tables.by_detector
    agreement, agreement_by_pair = _agreement(by_detector) if len(by_detector) > 1 else ([], {})
    return {
        "baseline": baseline,
        "labelled": labelled,
        "detectors": rows,
        "categories": tables.categories,
        "ranking": ranking,
        "agreement": agreement,
        "agreement_by_pair": agreement_by_pair,
    }
