"""A run's protocol: what its figures were measured under, assembled once from the experiment's settings
and the run's record of each detector (threshold and its source, input size, weights).

Two figures are like with like when their `comparable` records are equal: scored splits, threshold rule
(under `fixed` its value; under `validation` where the validation pairs come from, since each detector's
own threshold then follows from the data), alignment, input size (and its source), scaling and weights.
The compare page, the benchmark matrix and the API mark a figure whose record differs from the one it is
set beside with `differences` (what differs), and can keep only the same-protocol ones.
"""

from experiments.models import ThresholdRule
from experiments.runs.threshold_rules import validation_source

ALIGNMENT = "A warped onto B (SIFT + RANSAC)"


def protocol_of(run) -> dict:
    """The run's protocol: the run-wide settings and, per detector, what it ran under."""
    experiment = run.experiment
    environment = run.environment or {}
    infos = environment.get("detector_info") or {}
    weights = environment.get("weights") or {}
    settings = experiment.settings_record()
    detectors = {}
    for name in experiment.detectors:
        info = infos.get(name) or {}
        fields = {
            "threshold": info.get("threshold"),
            "threshold_source": info.get("threshold_source"),
            "input_size": info.get("input_size"),
            "input_size_source": info.get("input_size_source"),
            "precision": info.get("precision"),
            "weights": weights.get(name) or info.get("weights") or "",
        }
        if fields["threshold"] is None and experiment.threshold_rule == ThresholdRule.FIXED:
            fields.update(threshold=experiment.threshold, threshold_source="fixed")
        detectors[name] = {**fields, "scaling": _scaling(settings, fields)}
    return {
        "scored_splits": list(experiment.splits) or ["every pair"],
        "threshold_rule": experiment.threshold_rule,
        "fixed_threshold": experiment.threshold if experiment.threshold_rule == ThresholdRule.FIXED else None,
        "validation": _validation(experiment, environment),
        "alignment": ALIGNMENT if experiment.align else "none",
        "scaling": experiment.scaling,
        "input_size_override": experiment.input_size,
        "detectors": detectors,
    }


def _validation(experiment, environment: dict) -> dict | None:
    """Where the validation pairs come from and, once the run is prepared, how many and their manifest hash."""
    source = validation_source(experiment)
    dataset = environment.get("dataset") or {}
    if source is not None and "validation_pairs" in dataset:
        source |= {"n_pairs": dataset["validation_pairs"], "manifest_sha256": dataset["validation_manifest_sha256"]}
    return source


def _scaling(settings: dict, fields: dict) -> str:
    return settings.get("scaling") or "auto" if fields.get("input_size") else "none (full size)"


def comparable(settings: dict, fields: dict) -> dict:
    """What must be equal for two figures of one detector to stand side by side: from an experiment's
    `settings_record()` and the detector's fields (a leaderboard row or `protocol_of`'s detector entry)."""
    rule = settings.get("threshold_rule") or ThresholdRule.FIXED
    if rule == ThresholdRule.VALIDATION:
        holdout = settings.get("validation_holdout")
        source = f"{holdout:.0%} train hold-out, seed {settings.get('seed')}" if holdout else "val split"
        threshold = f"validation ({source})"
    else:
        threshold = f"fixed at {settings.get('threshold')}"
    size = fields.get("input_size")
    return {
        "scored splits": ", ".join(settings.get("splits") or []) or "every pair",
        "threshold": threshold,
        "alignment": "aligned" if settings.get("align") else "none",
        "input size": f"{size} px ({fields.get('input_size_source') or 'unknown'})" if size else "full size",
        "scaling": _scaling(settings, fields),
        "weights": fields.get("weights") or "",
    }


def run_comparables(run) -> dict[str, dict]:
    """Per detector of `run`, its `comparable` record."""
    settings = run.experiment.settings_record()
    return {name: comparable(settings, fields) for name, fields in protocol_of(run)["detectors"].items()}


# What every detector of one run shares: the keys two detectors' figures on one dataset must agree on.
RUN_KEYS = ("scored splits", "threshold", "alignment")


def differences(reference: dict, other: dict, keys=None) -> list[str]:
    """What differs between two `comparable` records (or only their `keys`), one line each (empty: the same)."""
    keys = reference if keys is None else keys
    return [
        f"{key}: {other.get(key)} (vs {reference.get(key)})" for key in keys if reference.get(key) != other.get(key)
    ]
