"""Each detector's threshold under the experiment's `threshold_rule`.

`fixed`: the experiment's `threshold` for every detector. `validation`: before a detector scores a pair,
its maps of the validation pairs (`selectors.validation_pairs`: the val split, else a seeded hold-out
share of the train split) are reduced to summed score histograms (`inference.metrics.ranking_histogram`,
the same groups every result stores) and its F1-optimal threshold is read from them; that threshold is
frozen in the run's record of the detector and every scored pair's mask, metrics and cache key are
made at it. Thresholds lie on the histograms' grid (multiples of 1/RANKING_BINS, as the leaderboard's
threshold slider): on the validation pixels, predicting `p >= threshold` there is exactly the best mask
over that grid.
"""

import numpy as np

from experiments.errors import ServiceError
from experiments.models import Split, ThresholdRule
from experiments.runs.selectors import validation_pairs

RULES_HELP = (
    "fixed (the threshold for every detector) or validation (each detector's F1-optimal threshold on the "
    "dataset's validation pairs, applied to the scored pairs)"
)
MAX_HOLDOUT = 0.5
BATCH = 8


def check_threshold_rule(rule, holdout, *, dataset, splits: list[str]) -> tuple[str, float | None]:
    """`(rule, hold-out share or None)` for an experiment scoring `splits` of `dataset`; ServiceError
    (-> 400) says what to change."""
    rule = rule or ThresholdRule.FIXED
    if rule not in ThresholdRule.values:
        raise ServiceError(f"Unknown threshold rule {str(rule)[:40]!r}: {RULES_HELP}.", field="threshold_rule")
    if holdout in (None, ""):
        holdout = None
    else:
        try:
            holdout = float(holdout)
        except (TypeError, ValueError):
            raise ServiceError(
                f"validation_holdout must be a number, not {holdout!r}.", field="validation_holdout"
            ) from None
        if not 0 < holdout <= MAX_HOLDOUT:
            raise ServiceError(
                f"validation_holdout is the share of train pairs held out: above 0, at most {MAX_HOLDOUT}.",
                field="validation_holdout",
            )
    if rule == ThresholdRule.FIXED:
        if holdout is not None:
            raise ServiceError(
                "validation_holdout applies to threshold_rule validation only.", field="validation_holdout"
            )
        return rule, None
    if not splits:
        raise ServiceError(
            'The validation rule needs the scored splits named (e.g. ["test"]): scoring every pair would '
            "score the validation pairs too.",
            field="splits",
        )
    labelled = dataset.pairs.exclude(label="")
    if labelled.filter(split=Split.VAL).exists():
        if Split.VAL in splits:
            raise ServiceError("The val split chooses the thresholds: it cannot be scored too.", field="splits")
        if holdout is not None:
            raise ServiceError(
                "The dataset has a validation split; validation_holdout is for datasets without one.",
                field="validation_holdout",
            )
        return rule, None
    if holdout is None:
        raise ServiceError(
            "The dataset has no labelled validation (val) pairs: set validation_holdout (e.g. 0.2) to hold out a "
            "seeded share of its train pairs, or use threshold_rule fixed.",
            field="validation_holdout",
        )
    if Split.TRAIN in splits:
        raise ServiceError("The held-out train pairs choose the thresholds: the train split cannot be scored.",
                           field="splits")  # fmt: skip
    if not labelled.filter(split=Split.TRAIN).exists():
        raise ServiceError("The dataset has no labelled train pairs to hold out.", field="validation_holdout")
    return rule, holdout


def validation_source(experiment) -> dict | None:
    """Where the validation pairs come from, as the protocol records it (None under the fixed rule)."""
    if experiment.threshold_rule != ThresholdRule.VALIDATION:
        return None
    if experiment.validation_holdout:
        share = experiment.validation_holdout
        return {"split": "train", "holdout": share, "seed": experiment.seed,
                "label": f"a seeded {share:.0%} hold-out of the train split (seed {experiment.seed})"}  # fmt: skip
    return {"split": "val", "holdout": None, "seed": None, "label": "the val split"}


def threshold_from_histograms(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """`(threshold, F1)`: the F1-optimal threshold on the grid of summed `ranking_histogram` counts, kept
    strictly inside (0, 1); ValueError when no pixel is changed."""
    from inference.metrics import RANKING_BINS, best_f1_from_histograms, threshold_histogram

    if int(np.sum(pos)) == 0:
        raise ValueError("the validation pairs have no changed pixel: no F1-optimal threshold exists")
    threshold, f1 = best_f1_from_histograms(threshold_histogram(pos), threshold_histogram(neg))
    level = min(max(round(threshold * RANKING_BINS), 1), RANKING_BINS - 1)
    return level / RANKING_BINS, float(f1)


def detector_threshold(run, slot, alignments: dict, *, between_batches=lambda: None) -> float:
    """The threshold `slot`'s detector scores at in `run`, recorded in its record
    (`threshold`, `threshold_source`); one chosen on validation by an earlier attempt is kept.
    `between_batches()` runs before each batch of validation pairs (the engine's cancel check)."""
    from experiments.runs.run_records import update_detector_record

    experiment = run.experiment
    record = (run.environment.get("detector_info") or {}).get(slot.name) or {}
    if experiment.threshold_rule != ThresholdRule.VALIDATION:
        chosen = {"threshold": experiment.threshold, "threshold_source": "fixed"}
    elif record.get("threshold_source", "").startswith("validation"):
        return record["threshold"]  # frozen: the results kept from an earlier attempt were made at it
    else:
        chosen = _chosen_on_validation(experiment, slot, alignments, between_batches)

    def update(_environment: dict, stored: dict) -> None:
        stored.update(chosen)

    update_detector_record(run.pk, slot.name, update)
    return chosen["threshold"]


def _chosen_on_validation(experiment, slot, alignments: dict, between_batches) -> dict:
    from experiments.runs.pair_inputs import load_pair_inputs
    from inference.metrics import RANKING_BINS, ranking_histogram

    pairs = validation_pairs(experiment)
    if not pairs:
        raise ValueError("the dataset has no labelled validation pairs for the validation threshold rule")
    pos = neg = 0
    for start in range(0, len(pairs), BATCH):
        between_batches()
        inputs = [load_pair_inputs(pair, alignments.get(pair.pk)) for pair in pairs[start : start + BATCH]]
        for item, prob in zip(inputs, slot.predict_untimed(inputs), strict=True):
            positive, negative = ranking_histogram(prob, item.label, bins=RANKING_BINS, valid=item.valid)
            pos, neg = pos + positive, neg + negative
    threshold, f1 = threshold_from_histograms(pos, neg)
    return {
        "threshold": threshold,
        "threshold_source": f"validation ({len(pairs)} pairs)",
        "validation_f1": f1,
        "validation_pairs": len(pairs),
    }
