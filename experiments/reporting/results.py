"""A run's per-pair results as flat rows (CSV, API, batch archives): one set of column names."""

import csv
import io

RESULT_METRICS = (
    "iou", "f1", "precision", "recall", "oa", "kappa", "auroc", "ap", "changed_fraction", "fp_area",
    "has_change", "false_alarm", "object_precision", "object_recall", "object_f1",
)  # fmt: skip
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


def csv_text(columns, rows) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return buffer.getvalue()


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
    return csv_text(RESULT_COLUMNS, (result_row(r) for r in results))


def compact_metrics(metrics: dict) -> dict:
    """A result's metrics without the 256-bin histograms (they are for pooling, not reading)."""
    return {key: value for key, value in (metrics or {}).items() if key not in BULKY_METRICS}
