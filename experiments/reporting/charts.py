"""Chart data of a run's leaderboard: IoU against latency (with the Pareto front) and PR curves."""

from experiments.models import Run
from experiments.reporting.leaderboard import detector_colours
from inference.numbers import finite_or_none


def _value(row: dict, *path):
    for part in path:
        row = row.get(part) if isinstance(row, dict) else None
    return finite_or_none(row)


def pareto_front(points: list[dict]) -> list[str]:
    """Names of the points no other point beats on both lower latency and higher IoU."""
    front = []
    for p in points:
        dominated = any(
            q is not p
            and q["latency"] <= p["latency"]
            and q["iou"] >= p["iou"]
            and (q["latency"] < p["latency"] or q["iou"] > p["iou"])
            for q in points
        )
        if not dominated:
            front.append(p["detector"])
    return front


def chart_data(run: Run) -> dict:
    """JSON for the scatter (IoU against latency, size = memory, Pareto front) and PR curves."""
    leaderboard = run.leaderboard or {}
    colours = detector_colours(run.experiment.detectors)
    points, curves = [], []
    for row in leaderboard.get("detectors", []):
        iou = _value(row, "pooled", "iou")
        iou_kind = "pooled"
        if iou is None:
            iou, iou_kind = _value(row, "per_pair_mean", "iou"), "per-pair mean"
        latency = _value(row, "latency_ms_p50")
        if iou is not None and latency is not None:
            points.append(
                {
                    "detector": row["detector"],
                    "iou": iou,
                    "iou_kind": iou_kind,
                    "latency": latency,
                    "memory": _value(row, "peak_memory_mb"),
                    "colour": colours.get(row["detector"]),
                }
            )
        curve = (row.get("pooled") or {}).get("pr_curve") or {}
        if curve.get("recall"):
            curves.append(
                {
                    "detector": row["detector"],
                    "recall": curve["recall"],
                    "precision": curve["precision"],
                    "colour": colours.get(row["detector"]),
                }
            )
    front = set(pareto_front(points))
    for p in points:
        p["pareto"] = p["detector"] in front
    return {"scatter": points, "pr_curves": curves}
