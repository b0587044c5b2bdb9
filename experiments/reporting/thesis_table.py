"""The thesis's own summary of a run: detector, IoU, time per pair, memory and where the weights came
from, the table the platform was built to reproduce (Siamese ResNet-50 vs VGG16 vs MobileNetV3).

It is a view of the full leaderboard (`experiments.reporting.leaderboard`): the same rows in the same
order, a few of its columns with labels that say exactly what each number is. Beside each measured
figure: the claimed one where a claim exists (`experiments.claims`: the thesis's own for its three
models, a user's for their checkpoint, ONNX model or prediction set), the difference (measured -
claimed) and what differs between the two measurements (data, input size, hardware).
"""

from experiments.models import Run
from experiments.plans.record import made_elsewhere
from experiments.reporting.leaderboard import LeaderboardState, leaderboard_table
from experiments.reporting.results import csv_text

NOT_MEASURED = "not measured here"
THESIS_FIELDS = ("detector", "iou", "claimed_iou", "iou_difference", "time_ms", "claimed_time_ms", "time_difference",
                 "memory_mib", "claimed_memory_mb", "memory_difference", "worker_peak_rss_mib", "weights_source",
                 "claim_source", "differs")  # fmt: skip
THESIS_LABELS = {
    "detector": "Model",
    "iou": "IoU (pooled over the scored pairs)",
    "claimed_iou": "IoU claimed",
    "iou_difference": "Δ IoU (measured - claimed)",
    "time_ms": "Time per pair (ms, median at batch 1)",
    "claimed_time_ms": "Time claimed (ms)",
    "time_difference": "Δ time (ms)",
    "memory_mib": "Model memory (MiB: weights + one batch-1 prediction, own process)",
    "claimed_memory_mb": "Memory claimed (MB)",
    "memory_difference": "Δ memory (MiB - MB claimed)",
    "worker_peak_rss_mib": "Worker peak RSS (MiB, the whole process)",
    "weights_source": "Weights",
    "claim_source": "Claimed by",
    "differs": "What differs from the claim's measurement",
}
# claimed metric: (claimed field, difference field)
CLAIM_FIELDS = {"iou": ("claimed_iou", "iou_difference"), "latency_ms": ("claimed_time_ms", "time_difference"),
                "memory_mb": ("claimed_memory_mb", "memory_difference")}  # fmt: skip
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
            "memory_mib": cells["model_memory_mib"]["value"] if measured else None,
            "worker_peak_rss_mib": cells["peak_memory_mb"]["value"] if measured else None,
            "weights_source": weights_source(row["weights"], row["weights_sha256"]),
            "measured_here": measured,
            "failed": row["failed"],
            **_claimed(row),
        })  # fmt: skip
    return records


def _claimed(row: dict) -> dict:
    """The claimed figures beside the measured ones (None where nothing is claimed), who claims them
    and what differs; `claims` lists every claim on the row, whatever its metric."""
    claims = row["claims"]  # set beside the measured figures by the leaderboard
    fields = dict.fromkeys(field for pair in CLAIM_FIELDS.values() for field in pair)
    for claim in claims:
        if claim["metric"] in CLAIM_FIELDS:
            claimed, difference = CLAIM_FIELDS[claim["metric"]]
            fields[claimed], fields[difference] = claim["claimed"], claim["difference"]
    differs = sorted({text for claim in claims for text in claim["differs"]})
    sources = sorted({claim["source"] for claim in claims})
    return {**fields, "claim_source": "; ".join(sources), "differs": "; ".join(differs), "claims": claims}


def thesis_csv(run: Run, state: LeaderboardState | None = None) -> str:
    rows = []
    for record in thesis_records(run, state):
        row = {field: record[field] for field in THESIS_FIELDS}
        if not record["measured_here"]:
            row["time_ms"] = row["memory_mib"] = row["worker_peak_rss_mib"] = NOT_MEASURED
        if record["failed"]:
            row["weights_source"] = f"failed: {record['failed']}"
        rows.append(row)
    return csv_text(list(THESIS_FIELDS), rows)
