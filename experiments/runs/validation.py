"""The rules for what a run may be asked to do: detectors, weights choices, threshold, input size, scaling.

Services, forms and serializers all call these, so the API, the pages and the CLI accept and
refuse exactly the same values with the same message.
"""

from experiments.errors import ServiceError
from experiments.plans.kinds import plan

THRESHOLD_MIN, THRESHOLD_MAX = 0.0, 1.0  # exclusive: at 0 every pixel is change, at 1 none is
INPUT_SIZE_MIN, INPUT_SIZE_MAX = 32, 1024
WEIGHT_CHOICES_HELP = 'use "auto", "random" or "checkpoint:<sha256>"'


def _number(value, kind, field: str, what: str):
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ServiceError(f"{what} must be a number, not {value!r}.", field=field) from None


def check_threshold(value, *, field: str = "threshold") -> float:
    threshold = _number(value, float, field, "The threshold")
    if not THRESHOLD_MIN < threshold < THRESHOLD_MAX:
        raise ServiceError(
            f"The threshold must be between {THRESHOLD_MIN:g} and {THRESHOLD_MAX:g} (exclusive), not {value}.",
            field=field,
        )
    return threshold


def check_input_size(value, *, field: str = "input_size") -> int:
    size = _number(value, int, field, "The input size")
    if not INPUT_SIZE_MIN <= size <= INPUT_SIZE_MAX:
        raise ServiceError(
            f"The input size must be between {INPUT_SIZE_MIN} and {INPUT_SIZE_MAX} pixels, not {value}.", field=field
        )
    return size


def scaling_help() -> str:
    from experiments.models import Scaling

    return f"use {', '.join(Scaling.values)} (auto: tile when B's longer side is more than twice the input size)"


def check_scaling(value, *, field: str = "scaling") -> str:
    """How learned detectors fit a pair to their input size (`inference.tiling`); None or blank: auto."""
    from experiments.models import Scaling

    if value in (None, ""):
        return Scaling.AUTO
    if value not in Scaling.values:
        raise ServiceError(f"Unknown scaling {value!r}: {scaling_help()}.", field=field)
    return str(value)


def check_optional_input_size(value, *, field: str = "input_size") -> int | None:
    """None (or blank): every learned detector at its own size (checkpoint, else registry); else an override."""
    return None if value in (None, "") else check_input_size(value, field=field)


def check_splits(splits, dataset) -> list[str]:
    """The splits a run scores. None: `test` when the dataset has test pairs, else every pair (`[]`)."""
    from experiments.models import Split

    if splits is None:
        return ["test"] if dataset.pairs.filter(split=Split.TEST).exists() else []
    if isinstance(splits, str) or not isinstance(splits, list | tuple):
        raise ServiceError(
            'Splits must be a list such as ["test"] or ["val", "test"] ([] for every pair).', field="splits"
        )
    known = [s for s in Split.values if s]
    unknown = [s for s in splits if s not in known]
    if unknown:
        raise ServiceError(
            f"Unknown split(s) {unknown}; use {', '.join(known)} (or none for every pair).", field="splits"
        )
    return [s for s in known if s in splits]


def check_detectors(detectors, *, owner=None, dataset=None, field: str = "detectors") -> list[str]:
    """Known detector names, de-duplicated in the order given: the registry's, `owner`'s ready ONNX
    models and the predictions uploaded for `dataset` (`experiments.plans`)."""
    if isinstance(detectors, str) or not isinstance(detectors, list | tuple) or not detectors:
        raise ServiceError("Choose at least one detector.", field=field)
    names = []
    for name in detectors:
        try:
            plan(owner, str(name), dataset=dataset)
        except KeyError as exc:
            raise ServiceError(str(exc.args[0]), field=field) from None
        if str(name) not in names:
            names.append(str(name))
    return names


def check_weight_choices(detector_weights, detectors: list[str]) -> dict:
    for name, choice in (detector_weights or {}).items():
        if name not in detectors:
            raise ServiceError(
                f"Weights given for {name!r}, which is not among the detectors.", field="detector_weights"
            )
        if not (choice in ("auto", "random") or str(choice).startswith("checkpoint:")):
            raise ServiceError(f"Weights {choice!r} for {name}: {WEIGHT_CHOICES_HELP}.", field="detector_weights")
    return dict(detector_weights or {})


def check_available(owner, detectors: list[str], detector_weights: dict, *, field: str = "detectors") -> None:
    """Refuse a detector that would run with weights "auto" but has nothing to load (the reason says
    what fixes it); an explicit "random" or "checkpoint:<sha256>" choice is allowed."""
    refused = {}
    for name in detectors:
        if str((detector_weights or {}).get(name, "auto")) != "auto":
            continue
        availability = plan(owner, name).availability
        if not availability.available:
            refused[name] = availability.reason
    if refused:
        reasons = "; ".join(f"{name} is unavailable: {reason}" for name, reason in refused.items())
        raise ServiceError(f'{reasons}. (Or choose its weights explicitly, e.g. "random".)', field=field)


def check_webhook(url, *, field: str = "webhook_url") -> str:
    """An optional URL signed run events are POSTed to: http(s), public addresses only (see
    `experiments.notifications.addresses`); blank for none. A URL checked before is returned as it
    is, so a caller can make the DNS lookup before its transaction."""
    from experiments.notifications.addresses import AddressRefused, CheckedUrl, check_webhook_url

    if isinstance(url, CheckedUrl):
        return url
    url = (url or "").strip()
    if not url:
        return ""
    if len(url) > 500:
        raise ServiceError("A webhook URL must be at most 500 characters.", field=field)
    try:
        return check_webhook_url(url)
    except AddressRefused as exc:
        raise ServiceError(str(exc), field=field) from None
