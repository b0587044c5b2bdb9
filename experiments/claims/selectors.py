"""Reads of claimed figures, and a claim set beside what a run measured: the difference and what
differs between the two measurements (data, input size, hardware)."""

from django.db.models import Q, QuerySet

from experiments.models import ClaimedFigure, ModelCheckpoint, PredictionSet, UploadedModel
from experiments.plans.record import split_name

# claimed metric: the measured figure of a leaderboard row it is set beside (`row["cells"]` keys)
MEASURED_BY_METRIC = {
    "iou": "pooled_iou",
    "f1": "pooled_f1",
    "precision": "pooled_precision",
    "recall": "pooled_recall",
    "latency_ms": "latency_ms_p50",
    "memory_mb": "model_memory_mib",
}


def claims_of(subject) -> QuerySet:
    """The claims on one checkpoint, uploaded model or prediction set."""
    field = {ModelCheckpoint: "checkpoint", UploadedModel: "uploaded_model", PredictionSet: "prediction_set"}
    return ClaimedFigure.objects.filter(**{field[type(subject)]: subject})


def _row_match(run, row: dict) -> Q:
    """The claims that apply to a leaderboard row of `run`: the built-in ones for its detector's
    name, and its owner's on the checkpoint, ONNX model or prediction set the row ran with."""
    owner, name = run.experiment.owner_id, row["detector"]
    match = Q(owner=None, detector=name)
    if (row.get("weights") or "").startswith("checkpoint") and row.get("weights_sha256"):
        match |= Q(owner_id=owner, checkpoint__sha256=row["weights_sha256"], checkpoint__detector=name)
    kind, bare = split_name(name)
    if kind == "onnx":
        match |= Q(owner_id=owner, uploaded_model__name=bare)
    elif kind == "external":
        match |= Q(owner_id=owner, prediction_set__name=bare, prediction_set__dataset_id=run.experiment.dataset_id)
    return match


def row_claims(run, row: dict) -> QuerySet:
    """The claims for one leaderboard row of `run` (`_row_match`)."""
    return ClaimedFigure.objects.filter(_row_match(run, row))


def claimed_beside_measured(run, row: dict) -> list[dict]:
    """Each claim for `row` beside the run's measured figure: the difference (measured - claimed) and
    what differs between the two measurements, so nobody reads the difference as the model's alone."""
    conditions = _run_conditions(run, row)
    return [_compared(claim, row, conditions) for claim in row_claims(run, row)]


def _compared(claim: ClaimedFigure, row: dict, conditions: dict) -> dict:
    measured = (row.get("cells") or {}).get(MEASURED_BY_METRIC[claim.metric], {}).get("value")
    return {
        "metric": claim.metric,
        "label": claim.get_metric_display(),
        "claimed": claim.value,
        "measured": measured,
        "difference": measured - claim.value if measured is not None else None,
        "source": claim.source,
        "differs": _differences(claim, conditions),
    }


def claims_text(compared: list[dict]) -> str:
    """`claimed_beside_measured` in one line (CSV, command line): metric, claimed value, difference."""
    parts = []
    for claim in compared:
        difference = f", Δ {claim['difference']:+.3g}" if claim["difference"] is not None else ""
        parts.append(f"{claim['metric']} {claim['claimed']:g} claimed{difference} ({claim['source']})")
    return "; ".join(parts)


def _run_conditions(run, row: dict) -> dict:
    worker = row.get("worker") or {}
    hardware = worker.get("gpu") or worker.get("cpu") or row.get("device") or "this platform's worker"
    return {"dataset": run.experiment.dataset.name, "input_size": row.get("input_size"), "hardware": hardware}


def _differences(claim: ClaimedFigure, run: dict) -> list[str]:
    """What is not the same in the claim's measurement and the run's (unknown counts as different)."""
    differs = []
    if (claim.dataset or "").strip().lower() != str(run["dataset"]).strip().lower():
        differs.append(f"data: claimed on {claim.dataset or 'unstated data'}, measured on {run['dataset']}")
    if claim.input_size != run["input_size"]:
        claimed = f"{claim.input_size} px" if claim.input_size else "an unstated size"
        measured = f"{run['input_size']} px" if run["input_size"] else "the pairs' own size"
        differs.append(f"input size: claimed at {claimed}, measured at {measured}")
    if (claim.hardware or "").strip().lower() != str(run["hardware"]).strip().lower():
        differs.append(f"hardware: claimed on {claim.hardware or 'unstated hardware'}, measured on {run['hardware']}")
    return differs
