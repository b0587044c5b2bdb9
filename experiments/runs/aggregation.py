"""The leaderboard of a run: one row per detector, per-category breakdown, baseline comparison.

Pooled metrics come from one confusion matrix summed over the run's pairs; per-pair means average
each pair's own value. Both are stored, labelled, with 95% bootstrap CIs of the per-pair means.
"""

from collections import defaultdict

import numpy as np

from experiments import storage
from experiments.models import Run
from inference.comparison import bootstrap_ci, compare_with_baseline, consensus_map, mask_iou, percentile
from inference.numbers import finite_or_none

SCORE_NAMES = ("iou", "f1", "precision", "recall", "oa", "kappa", "miou", "mf1")
PER_PAIR_NAMES = (*SCORE_NAMES, "auroc", "ap", "object_f1", "object_precision", "object_recall", "fp_area")
PR_POINTS = 64
CI_METRICS = ("iou", "f1", "precision", "recall")  # bootstrap CIs cost time: the headline metrics only
CATEGORY_CI_METRICS = ("iou", "f1")


def _pooled(results) -> dict:
    from inference.metrics import Confusion, ap_from_histograms, auroc_from_histograms, scores

    labelled = [r for r in results if "tp" in r.metrics]
    if not labelled:
        return {}
    conf = sum(
        (Confusion(r.metrics["tp"], r.metrics["fp"], r.metrics["fn"], r.metrics["tn"]) for r in labelled),
        Confusion.zero(),
    )
    pooled = dict(scores(conf))
    pos = np.sum([r.metrics["hist_pos"] for r in labelled], axis=0)
    neg = np.sum([r.metrics["hist_neg"] for r in labelled], axis=0)
    pooled["auroc"] = finite_or_none(auroc_from_histograms(pos, neg))
    pooled["ap"] = finite_or_none(ap_from_histograms(pos, neg))
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


def _summary(results, seed: int, ci_metrics=CI_METRICS) -> dict:
    means, cis = _per_pair(results, seed, ci_metrics)
    return {"n_pairs": len(results), "pooled": _pooled(results), "per_pair_mean": means, "ci": cis}


def detector_row(name: str, results, info: dict, seed: int) -> dict:
    latencies = [r.latency_ms for r in results if r.latency_ms is not None and not r.from_cache]
    latencies = latencies or [r.latency_ms for r in results if r.latency_ms is not None]
    memories = [r.peak_memory_mb for r in results if r.peak_memory_mb is not None]
    return {
        "detector": name,
        **_summary(results, seed),
        "latency_ms_p50": percentile(latencies, 50),
        "latency_ms_p95": percentile(latencies, 95),
        "peak_memory_mb": max(memories) if memories else None,
        "memory_kind": next((r.metrics.get("memory_kind") for r in results if r.metrics.get("memory_kind")), None),
        "params": info.get("params"),
        "flops": info.get("flops"),
        "family": info.get("family"),
        "weights": info.get("weights"),
        "weights_sha256": info.get("weights_sha256"),
        "from_cache": sum(1 for r in results if r.from_cache),
    }


def _comparisons(by_detector: dict, baseline: str, seed: int) -> dict:
    ious = {name: {r.pair_id: r.iou for r in results if r.iou is not None} for name, results in by_detector.items()}
    return compare_with_baseline(ious, baseline, seed=seed)


def _agreement(run: Run, by_detector: dict) -> tuple[list[dict], dict]:
    """Pairwise IoU of the detectors' predicted masks (useful without labels): the mean per detector
    pair, and each pair's own value (`"a|b" -> {pair id: IoU}`) for sorting pairs by disagreement.
    Also stores each pair's consensus map (share of detectors calling a pixel changed)."""
    from inference.images import load_mask

    names = sorted(by_detector)
    masks = {
        name: {r.pair_id: load_mask(storage.read_bytes(r.mask_key))[0] for r in results}
        for name, results in by_detector.items()
    }
    _store_consensus_maps(run, masks)
    rows, by_pair = [], {}
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = sorted(masks[first].keys() & masks[second].keys())
            values = {str(p): mask_iou(masks[first][p], masks[second][p]) for p in shared}
            by_pair[f"{first}|{second}"] = values
            rows.append(
                {"a": first, "b": second, "mean_iou": float(np.mean(list(values.values()))) if values else None}
            )
    return rows, by_pair


def consensus_key(run_id: int, pair_id: int) -> str:
    return storage.run_key(run_id, "consensus", f"{pair_id}.png")


def _store_consensus_maps(run: Run, masks: dict) -> None:
    from inference.render import heatmap_png

    pair_ids = set().union(*(per_pair.keys() for per_pair in masks.values()))
    for pair_id in pair_ids:
        available = [per_pair[pair_id] for per_pair in masks.values() if pair_id in per_pair]
        if len(available) > 1:
            storage.save_bytes(consensus_key(run.pk, pair_id), heatmap_png(consensus_map(available)))


def build_leaderboard(run: Run) -> dict:
    experiment = run.experiment
    seed = experiment.seed
    results = list(run.results.select_related("pair"))
    by_detector, by_category = defaultdict(list), defaultdict(lambda: defaultdict(list))
    for result in results:
        by_detector[result.detector].append(result)
        by_category[result.pair.category or "uncategorised"][result.detector].append(result)
    infos = run.environment.get("detector_info", {})
    baseline = experiment.baseline_detector or experiment.detectors[0]
    comparisons = _comparisons(by_detector, baseline, seed)
    rows = []
    for name in experiment.detectors:
        row = detector_row(name, by_detector.get(name, []), infos.get(name, {}), seed)
        row["comparison"] = comparisons.get(name)
        rows.append(row)
    labelled = any("tp" in r.metrics for r in results)
    agreement, agreement_by_pair = _agreement(run, by_detector) if len(by_detector) > 1 else ([], {})
    return {
        "baseline": baseline,
        "labelled": labelled,
        "detectors": rows,
        "categories": {
            category: {name: _summary(items, seed, CATEGORY_CI_METRICS) for name, items in per_detector.items()}
            for category, per_detector in sorted(by_category.items())
        },
        "agreement": agreement,
        "agreement_by_pair": agreement_by_pair,
    }
