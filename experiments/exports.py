"""A run's leaderboard and per-pair results as flat tables (CSV) or JSON, for the API and the pages.

The leaderboard itself is built once when the run ends (`experiments.runs.aggregation`) and stored on
the run; these functions only reshape it. Pooled values come from one confusion matrix over all
pairs; `mean_*` columns average each pair's own value (both are labelled as such).
"""

import csv
import io

from experiments.models import Run

POOLED_COLUMNS = ("iou", "f1", "precision", "recall", "oa", "kappa", "auroc", "ap", "best_f1", "best_f1_threshold")
MEAN_COLUMNS = ("iou", "f1", "precision", "recall", "auroc", "object_f1", "fp_area")
LEADERBOARD_COLUMNS = (
    "rank",
    "detector",
    "family",
    "weights",
    "n_pairs",
    *(f"pooled_{name}" for name in POOLED_COLUMNS),
    *(f"mean_{name}" for name in MEAN_COLUMNS),
    "latency_ms_p50",
    "latency_ms_p95",
    "peak_memory_mb",
    "memory_kind",
    "params",
    "from_cache",
)
RESULT_METRICS = ("iou", "f1", "precision", "recall", "oa", "kappa", "auroc", "ap", "changed_fraction", "fp_area")
RESULT_COLUMNS = (
    "pair",
    "category",
    "split",
    "detector",
    *RESULT_METRICS,
    "latency_ms",
    "peak_memory_mb",
    "weights",
    "from_cache",
)
BULKY_METRICS = ("hist_pos", "hist_neg")


def _sort_key(row: dict):
    """Best first: pooled F1 when labelled, else latency (no ground truth to rank by)."""
    f1 = row.get("pooled_f1")
    return (f1 is None, -(f1 or 0.0), row.get("latency_ms_p50") or float("inf"), row["detector"])


def leaderboard_rows(run: Run) -> list[dict]:
    """One flat row per detector, ranked; empty while the run has no leaderboard."""
    rows = []
    for entry in (run.leaderboard or {}).get("detectors", []):
        pooled, means = entry.get("pooled") or {}, entry.get("per_pair_mean") or {}
        row = {
            "detector": entry.get("detector"),
            "family": entry.get("family"),
            "weights": entry.get("weights"),
            "n_pairs": entry.get("n_pairs"),
            **{f"pooled_{name}": pooled.get(name) for name in POOLED_COLUMNS},
            **{f"mean_{name}": means.get(name) for name in MEAN_COLUMNS},
            **{name: entry.get(name) for name in ("latency_ms_p50", "latency_ms_p95", "peak_memory_mb")},
            "memory_kind": entry.get("memory_kind"),
            "params": entry.get("params"),
            "from_cache": entry.get("from_cache"),
        }
        rows.append(row)
    rows.sort(key=_sort_key)
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return [{column: row.get(column) for column in LEADERBOARD_COLUMNS} for row in rows]


def leaderboard_json(run: Run) -> dict:
    """The stored leaderboard plus the flat ranked rows, and what the run was."""
    experiment = run.experiment
    return {
        "run": run.pk,
        "state": run.state,
        "experiment": experiment.pk,
        "dataset": experiment.dataset_id,
        "settings": experiment.settings_record(),
        "rows": leaderboard_rows(run),
        "leaderboard": run.leaderboard or {},
    }


def _csv(columns, rows) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


def leaderboard_csv(run: Run) -> str:
    return _csv(LEADERBOARD_COLUMNS, leaderboard_rows(run))


def result_row(result) -> dict:
    metrics = result.metrics or {}
    return {
        "pair": result.pair.name,
        "category": result.pair.category,
        "split": result.pair.split,
        "detector": result.detector,
        **{name: metrics.get(name) for name in RESULT_METRICS},
        "latency_ms": result.latency_ms,
        "peak_memory_mb": result.peak_memory_mb,
        "weights": result.weights,
        "from_cache": result.from_cache,
    }


def results_csv(results) -> str:
    """Per-pair metrics of `results` (a queryset or list of `Result` with `pair` loaded)."""
    return _csv(RESULT_COLUMNS, (result_row(r) for r in results))


def compact_metrics(metrics: dict) -> dict:
    """A result's metrics without the 256-bin histograms (they are for pooling, not reading)."""
    return {key: value for key, value in (metrics or {}).items() if key not in BULKY_METRICS}
