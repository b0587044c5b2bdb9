"""A user's benchmark matrix: detectors x datasets, pooled F1 and IoU (with their pair-level bootstrap
intervals) from the newest finished run that scored each detector on each dataset, and the detector's
rank group within that run (each cell names its run). Built from the rows stored on each run's
leaderboard, so it costs one query however many runs there are."""

from experiments.runs import selectors as run_selectors
from inference.numbers import finite_or_none


def _pooled(row: dict, name: str):
    return finite_or_none((row.get("pooled") or {}).get(name))


def benchmark_matrix(user) -> dict:
    """`{"datasets": [{id, name}], "rows": [{detector, cells: [cell or None per dataset]}]}`; a cell is
    `{run, f1, f1_ci, iou, iou_ci, rank_group, weights, created_at}` (intervals `[low, high]` or None). Failed detectors of partial runs leave no cell."""
    cells: dict[tuple[str, int], dict] = {}
    datasets: dict[int, str] = {}
    for run_id, dataset_id, dataset_name, created_at, rows in run_selectors.leaderboard_rows_of(user):
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
            }
            datasets[dataset_id] = dataset_name
    ordered = sorted(datasets.items(), key=lambda item: (item[1].lower(), item[0]))
    detectors = sorted({name for name, _ in cells})
    return {
        "datasets": [{"id": pk, "name": name} for pk, name in ordered],
        "rows": [{"detector": name, "cells": [cells.get((name, pk)) for pk, _ in ordered]} for name in detectors],
    }
