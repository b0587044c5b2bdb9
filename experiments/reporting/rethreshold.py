"""A run's leaderboard at another threshold, recomputed from the stored per-pair score histograms
(no image is read, no new run is made).

Each labelled Result stores `hist_pos`/`hist_neg` (`inference.metrics.ranking_histogram`,
`RANKING_BINS` = 4096 groups, packed: `inference.metrics.unpack_counts`); after `threshold_histogram`,
level `m` holds exactly the pixels with `m / 4096 <= p < (m + 1) / 4096`, so
`inference.metrics.confusion_at_threshold` at `threshold = m / 4096` is exactly the engine's mask
`p >= threshold`.
Thresholds are therefore restricted to that grid (the page's slider moves in steps of 1/256, which lie
on it); a requested value off the grid is rounded to the nearest grid value and the answer says so.
At the run's own threshold the stored leaderboard is returned unchanged.

Recomputed per pair, then pooled and averaged exactly as `experiments.reporting.aggregation` does: the
confusion (`tp fp fn tn`), IoU/F1/precision/recall/OA/kappa/mIoU/mF1, FP area, false alarms, the
per-category tables, the paired IoU comparison with the run's baseline, the pooled intervals and rank
groups (`experiments.reporting.ranking`) and the PR point (pooled precision and recall). Object-level scores need the masks themselves: they are left out
(`not_recomputed`), i.e. they exist at the run's threshold only. AUROC, AP and the oracle threshold
do not depend on the threshold.
"""

import contextlib
import copy

from experiments.models import Run
from experiments.runs.validation import check_threshold
from inference.metrics import RANKING_BINS

SLIDER_STEP = 1 / 256
NOT_RECOMPUTED = ("object_precision", "object_recall", "object_f1")
NOT_RECOMPUTED_COLUMNS = ("mean_object_f1",)
CACHE_S = 600
RECOMPUTED_ROW_KEYS = (
    "n_pairs", "n_changed_pairs", "n_no_change_pairs", "pooled", "per_pair_mean", "ci", "no_change", "comparison",
)  # fmt: skip


def grid_threshold(value) -> tuple[float, float, bool]:
    """`(threshold on the grid, the value asked for, whether it was rounded)`; ServiceError (-> 400)
    outside (0, 1). A value that rounds to 0 or 1 is kept just inside."""
    asked = check_threshold(value)
    level = min(max(round(asked * RANKING_BINS), 1), RANKING_BINS - 1)
    threshold = level / RANKING_BINS
    return threshold, asked, threshold != asked


def _level(threshold: float) -> int:
    return round(threshold * RANKING_BINS)


def _pair_metrics(metrics: dict, threshold: float) -> dict:
    """One result's stored metrics with every threshold-dependent figure recomputed at `threshold`."""
    from inference.evaluation import false_alarm, has_change
    from inference.metrics import confusion_at_threshold, scores, threshold_histogram, unpack_counts

    pos = threshold_histogram(unpack_counts(metrics["hist_pos"]))
    neg = threshold_histogram(unpack_counts(metrics["hist_neg"]))
    conf = confusion_at_threshold(pos, neg, threshold)
    updated = {key: value for key, value in metrics.items() if key not in NOT_RECOMPUTED}
    updated.update(conf.as_dict())
    updated.update(scores(conf))
    valid = conf.total
    updated["fp_area"] = conf.fp / valid if valid else 0.0
    updated["changed_fraction"] = (conf.tp + conf.fp) / valid if valid else 0.0
    updated["has_change"] = has_change(updated)
    updated["false_alarm"] = false_alarm(updated)
    return updated


def _rethresholded_results(run: Run, threshold: float) -> list:
    """The run's results (not saved, never to be) with recomputed metrics; unlabelled ones as stored."""
    results = []
    for result in run.results.select_related("pair").iterator(chunk_size=200):
        if "tp" in result.metrics and result.metrics.get("hist_bins") == RANKING_BINS:
            result.metrics = _pair_metrics(result.metrics, threshold)
            result.iou, result.f1 = result.metrics["iou"], result.metrics["f1"]
        results.append(result)
    return results


def recompute_leaderboard(run: Run, threshold: float) -> dict:
    """The stored leaderboard with every threshold-dependent figure recomputed at `threshold` (on the grid)."""
    from experiments.reporting.aggregation import detector_tables
    from experiments.reporting.ranking import with_ranking

    stored = run.leaderboard or {}
    failed = {r["detector"] for r in stored.get("detectors", []) if r.get("failed")}
    results = [r for r in _rethresholded_results(run, _level(threshold) / RANKING_BINS) if r.detector not in failed]
    tables = detector_tables(
        results,
        baseline=stored.get("baseline") or run.experiment.detectors[0],
        seed=run.experiment.seed,
        infos=run.environment.get("detector_info", {}),
    )
    rows = []
    for source in stored.get("detectors", []):
        if source.get("failed"):
            rows.append(source)
            continue
        row = tables.row(source["detector"])
        # what the histograms cannot change is kept as stored (measurements, training overlap)
        rows.append({**source, **{key: row[key] for key in RECOMPUTED_ROW_KEYS}, "threshold": threshold,
                     "threshold_source": "chosen on the page (recomputed)"})  # fmt: skip
    rows, ranking = with_ranking(rows, tables.by_detector, seed=run.experiment.seed)
    return {**stored, "detectors": rows, "categories": tables.categories, "ranking": ranking}


def threshold_record(run: Run, threshold: float, asked: float | None = None, rounded: bool = False) -> dict:
    """What the figures are computed at, for the page, the API and every export."""
    stored = run.leaderboard or {}
    oracle = {
        r["detector"]: (r.get("pooled") or {}).get("best_f1_threshold")
        for r in stored.get("detectors", [])
        if not r.get("failed")
    }
    at_run = threshold == run.experiment.threshold and run.experiment.threshold_rule == "fixed"
    return {
        "threshold": threshold,
        "requested": threshold if asked is None else asked,
        "rounded_to_grid": rounded,
        "grid": f"multiples of 1/{RANKING_BINS}",
        "run_threshold": run.experiment.threshold,
        "at_run_threshold": at_run,
        "source": "stored leaderboard" if at_run else "recomputed from the stored per-pair score histograms",
        "not_recomputed": [] if at_run else list(NOT_RECOMPUTED_COLUMNS),
        "oracle_thresholds": oracle,
        "oracle_note": "oracle thresholds are tuned on these very pairs: an upper bound, not a result",
    }


def run_at_threshold(run: Run, value) -> tuple[Run, dict]:
    """A copy of `run` whose leaderboard holds the figures at the threshold `value` asks for (rounded to
    the grid), and the threshold record. Every reader of `run.leaderboard` (table, CSV, JSON, charts,
    thesis table, reports) then shows that threshold. Raises ServiceError for values outside (0, 1)."""
    if value is None or value == "":
        per_detector = run.experiment.threshold_rule != "fixed"
        source = "stored leaderboard: each detector at its own threshold (see its row)" if per_detector else None
        return run, {**threshold_record(run, run.experiment.threshold), "at_run_threshold": True,
                     "source": source or "stored leaderboard", "not_recomputed": []}  # fmt: skip
    asked = check_threshold(value)
    if asked == run.experiment.threshold and run.experiment.threshold_rule == "fixed":
        return run, threshold_record(run, asked)
    threshold, asked, rounded = grid_threshold(asked)
    record = threshold_record(run, threshold, asked, rounded)
    if record["at_run_threshold"] or not run.leaderboard:
        return run, record
    view = copy.copy(run)
    view.leaderboard = {**_cached_recomputation(run, threshold), "threshold": record}
    return view, record


def _cached_recomputation(run: Run, threshold: float) -> dict:
    """`recompute_leaderboard`, kept a few minutes per (run, time it finished, level): a slider dragged back
    and forth reads the results once per position. A cache that fails is skipped, never an error."""
    from django.core.cache import cache

    finished = run.finished_at.isoformat() if run.finished_at else ""
    key = f"rethreshold:{run.pk}:{finished}:{_level(threshold)}"
    try:
        cached = cache.get(key)
    except Exception:  # noqa: BLE001 - the cache is an optimisation only
        cached = None
    if cached is not None:
        return cached
    leaderboard = recompute_leaderboard(run, threshold)
    with contextlib.suppress(Exception):  # the cache is an optimisation only
        cache.set(key, leaderboard, timeout=CACHE_S)
    return leaderboard


def pooled_points(run: Run) -> list[dict]:
    """Per detector, the pooled figures the slider updates and the PR point (recall, precision)."""
    points = []
    for row in (run.leaderboard or {}).get("detectors", []):
        if row.get("failed"):
            continue
        pooled = row.get("pooled") or {}
        points.append({
            "detector": row["detector"],
            **{name: pooled.get(name) for name in ("iou", "f1", "precision", "recall", "oa", "kappa")},
            "pr_point": {"recall": pooled.get("recall"), "precision": pooled.get("precision")},
        })  # fmt: skip
    return points
