"""How a leaderboard ranks its detectors, and how sure that ranking is.

`rank_key` is the one ranking order (pooled F1, then median latency). `with_ranking` adds, when the
leaderboard is built (run finish) or recomputed at another threshold, the pair-level bootstrap
intervals of pooled F1 and IoU to each row's `ci` (`pooled_f1`, `pooled_iou`), each row's rank group
and the paired tests behind them (`leaderboard["ranking"]`); see `inference.ranking_intervals`.
Stored with the leaderboard, never computed per page view.
"""

from django.conf import settings

from inference.numbers import finite_or_none


def rank_key(row: dict):
    """Best first: pooled F1 when labelled, else latency (no ground truth to rank by)."""
    f1 = finite_or_none((row.get("pooled") or {}).get("f1"))
    latency = finite_or_none(row.get("latency_ms_p50"))
    return (f1 is None, -(f1 or 0.0), latency if latency is not None else float("inf"), row["detector"])


def pair_counts(by_detector: dict) -> dict[str, dict]:
    """`{detector: {pair id: (tp, fp, fn)}}` over the labelled results, at the threshold they hold."""
    return {
        name: {r.pair_id: (r.metrics["tp"], r.metrics["fp"], r.metrics["fn"]) for r in results if "tp" in r.metrics}
        for name, results in by_detector.items()
    }


def with_ranking(rows: list[dict], by_detector: dict, *, seed: int) -> tuple[list[dict], dict | None]:
    """`rows` (stored leaderboard rows) with their pooled intervals and rank groups, and the ranking record
    (None when nothing is labelled)."""
    from inference.ranking_intervals import ranking_uncertainty

    ranked = sorted((r for r in rows if not r.get("failed")), key=rank_key)
    order = [r["detector"] for r in ranked if finite_or_none((r.get("pooled") or {}).get("f1")) is not None]
    counts = pair_counts({name: by_detector.get(name, []) for name in order})
    if not any(counts.values()):
        return rows, None
    ranking = ranking_uncertainty(counts, order, seed=seed, resamples=settings.RANKING_BOOTSTRAP_RESAMPLES)
    updated = []
    for row in rows:
        facts = ranking["detectors"].get(row["detector"]) if not row.get("failed") else None
        if facts:
            ci = {**(row.get("ci") or {}), "pooled_f1": facts["f1_ci"], "pooled_iou": facts["iou_ci"]}
            row = {**row, "ci": ci, "rank_group": facts["rank_group"], "rank_range": facts["rank_range"],
                   "rank_tied_with": facts["tied_with"]}  # fmt: skip
        updated.append(row)
    return updated, ranking
