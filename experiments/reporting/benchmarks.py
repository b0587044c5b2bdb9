"""A user's benchmark matrix: detectors x datasets, pooled F1 and IoU (with their pair-level bootstrap
intervals) from the newest finished run that scored each detector on each dataset, and the detector's
rank group within that run (each cell names its run). Built from the rows stored on each run's
leaderboard, so it costs one query however many runs there are.

Each cell carries its threshold and source, and `protocol_differs`: what of its run-wide protocol
(scored splits, threshold rule, alignment: `experiments.runs.protocol.RUN_KEYS`) differs from the
protocol most cells of its dataset share, so unlike figures are never set side by side unmarked."""

from collections import Counter

from experiments.runs import selectors as run_selectors
from experiments.runs.protocol import RUN_KEYS, comparable, differences
from inference.numbers import finite_or_none


def _pooled(row: dict, name: str):
    return finite_or_none((row.get("pooled") or {}).get(name))


def _newest(column: list[dict], protocol: tuple):
    """Ties between equally common protocols go to the one of the newest run."""
    return max(cell["created_at"] for cell in column if tuple(cell["protocol"].items()) == protocol)


def benchmark_matrix(user, *, same_protocol: bool = False) -> dict:
    """`{"datasets": [{id, name}], "rows": [{detector, cells: [cell or None per dataset]}]}`; a cell is
    `{run, f1, f1_ci, iou, iou_ci, rank_group, weights, created_at, threshold, threshold_source, protocol,
    protocol_differs}` (intervals `[low, high]` or None). Failed detectors of partial runs leave no cell; with
    `same_protocol`, neither does a cell whose protocol differs."""
    cells: dict[tuple[str, int], dict] = {}
    datasets: dict[int, str] = {}
    for run_id, dataset_id, dataset_name, created_at, rows, *settings in run_selectors.leaderboard_rows_of(user):
        settings = dict(zip(run_selectors.PROTOCOL_SETTINGS, settings, strict=True))
        for row in rows or []:
            if not isinstance(row, dict) or row.get("failed") or not row.get("detector"):
                continue
            key = (row["detector"], dataset_id)
            if key in cells:  # runs come newest first
                continue
            cells[key] = {
                "run": run_id,
                "f1": _pooled(row, "f1"),
                "f1_ci": (row.get("ci") or {}).get("pooled_f1"),
                "iou": _pooled(row, "iou"),
                "iou_ci": (row.get("ci") or {}).get("pooled_iou"),
                "rank_group": row.get("rank_group"),
                "weights": row.get("weights") or "",
                "created_at": created_at,
                "threshold": row.get("threshold", settings["threshold"]),
                "threshold_source": row.get("threshold_source") or "fixed",
                "protocol": {key: comparable(settings, row)[key] for key in RUN_KEYS},
            }
            datasets[dataset_id] = dataset_name
    ordered = sorted(datasets.items(), key=lambda item: (item[1].lower(), item[0]))
    detectors = sorted({name for name, _ in cells})
    for dataset_id in datasets:
        column = [cell for (_, pk), cell in cells.items() if pk == dataset_id]
        counts = Counter(tuple(cell["protocol"].items()) for cell in column)
        reference = dict(max(counts, key=lambda key: (counts[key], _newest(column, key))))
        for cell in column:
            cell["protocol_differs"] = differences(reference, cell["protocol"], RUN_KEYS)
    if same_protocol:
        cells = {key: cell for key, cell in cells.items() if not cell["protocol_differs"]}
    return {
        "datasets": [{"id": pk, "name": name} for pk, name in ordered],
        "rows": [{"detector": name, "cells": [cells.get((name, pk)) for pk, _ in ordered]} for name in detectors],
    }
