"""Writes of claimed figures: a user's claim on their own checkpoint, ONNX model or prediction set,
and the thesis's claims shipped with the platform."""

from django.db import transaction

from experiments.claims.thesis import THESIS_FIGURES, thesis_claims
from experiments.models import ClaimedFigure

SUBJECT_FIELDS = ("checkpoint", "uploaded_model", "prediction_set")


@transaction.atomic
def claimed_figure_add(*, owner, subject, field: str, data: dict) -> ClaimedFigure:
    """A claim on `subject` (the `field` it goes in: one of `SUBJECT_FIELDS`), owned by `owner`."""
    if field not in SUBJECT_FIELDS:
        raise ValueError(f"claims go on one of {', '.join(SUBJECT_FIELDS)}, not {field!r}")
    return ClaimedFigure.objects.create(owner=owner, **{field: subject}, **data)


@transaction.atomic
def thesis_claims_ensure() -> int:
    """The thesis's claims for its three models, added where missing (migration 0014 adds them too;
    `setup_demo` calls this so a demo database flushed since still shows them). How many were added."""
    present = set(
        ClaimedFigure.objects.filter(owner=None, detector__in=list(THESIS_FIGURES)).values_list("detector", "metric")
    )
    missing = [claim for claim in thesis_claims() if (claim["detector"], claim["metric"]) not in present]
    ClaimedFigure.objects.bulk_create(ClaimedFigure(**claim) for claim in missing)
    return len(missing)
