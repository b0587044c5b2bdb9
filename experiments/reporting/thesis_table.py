"""The thesis's own summary of a run: detector, IoU, time per pair, memory and where the weights came
from, the table the platform was built to reproduce (Siamese ResNet-50 vs VGG16 vs MobileNetV3).

It is a view of the full leaderboard (`experiments.reporting.leaderboard`): the same rows in the same
order, a few of its columns with labels that say exactly what each number is.
"""

from experiments.models import Run
from experiments.plans.record import made_elsewhere
from experiments.reporting.leaderboard import LeaderboardState, leaderboard_table
from experiments.reporting.results import csv_text

NOT_MEASURED = "not measured here"
THESIS_FIELDS = ("detector", "iou", "time_ms", "memory_mib", "weights_source")
THESIS_LABELS = {
    "detector": "Model",
    "iou": "IoU (pooled over the scored pairs)",
    "time_ms": "Time per pair (ms, median at batch 1)",
    "memory_mib": "Memory (MiB, peak during inference)",
    "weights_source": "Weights",
}
WEIGHTS_SOURCES = {
    "checkpoint": "trained checkpoint",
    "imagenet": "ImageNet backbone, head untrained",
    "random": "untrained (random init)",
    "none": "none (classical)",
    "onnx": "uploaded ONNX model",
    "external": "uploaded predictions",
}


def weights_source(weights: str, sha256: str) -> str:
    label = WEIGHTS_SOURCES.get(weights, weights or "")
    return f"{label} {sha256[:12]}" if sha256 and not sha256.startswith("seed=") else label


def thesis_records(run: Run, state: LeaderboardState | None = None) -> list[dict]:
    """One row per detector in the leaderboard's order; a failed detector keeps its row with its reason."""
    records = []
    for row in leaderboard_table(run, state)["rows"]:
        cells = row["cells"]
        measured = not made_elsewhere(row)
        records.append({
            "detector": row["detector"],
            "iou": cells["pooled_iou"]["value"],
            "time_ms": cells["latency_ms_p50"]["value"] if measured else None,
            "memory_mib": cells["peak_memory_mb"]["value"] if measured else None,
            "weights_source": weights_source(row["weights"], row["weights_sha256"]),
            "measured_here": measured,
            "failed": row["failed"],
        })  # fmt: skip
    return records


def thesis_csv(run: Run, state: LeaderboardState | None = None) -> str:
    rows = []
    for record in thesis_records(run, state):
        row = {field: record[field] for field in THESIS_FIELDS}
        if not record["measured_here"]:
            row["time_ms"] = row["memory_mib"] = NOT_MEASURED
        if record["failed"]:
            row["weights_source"] = f"failed: {record['failed']}"
        rows.append(row)
    return csv_text(list(THESIS_FIELDS), rows)
