"""Detector registry: a name -> builder map filled by ``@register_detector`` (timm style).

Built-in detectors register themselves when ``inference.detectors`` is imported, which the
public functions here do on first use. A plug-in registers its own::

    @register_detector("my-detector", family="classical", learned=False)
    def build_my_detector(*, name, weights, device, **options) -> Detector: ...

A builder is called as ``builder(name=..., weights=..., device=..., **options)``.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

FAMILIES = ("classical", "siamese", "compare-head", "ensemble")


@dataclass(frozen=True)
class DetectorSpec:
    """Static facts about a registered detector, known without building it.

    ``model_factory(backbone_state)`` (learned detectors) builds the bare network; it is used
    on the ``meta`` device to count parameters without allocating or loading weights.
    """

    name: str
    builder: Callable
    family: str
    learned: bool
    input_size: int | None = None
    backbone: str | None = None
    description: str = ""
    model_factory: Callable | None = None


_REGISTRY: dict[str, DetectorSpec] = {}


class UnknownDetectorError(KeyError):
    """Raised for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:
        return str(self.args[0])


def register_detector(
    name: str,
    *,
    family: str | None = None,
    learned: bool | None = None,
    input_size: int | None = None,
    backbone: str | None = None,
    description: str = "",
    model_factory: Callable | None = None,
) -> Callable:
    """Decorator registering ``builder`` under ``name``; a name can be registered once.

    ``family`` and ``learned`` default to the builder's own ``family`` / ``learned``
    attributes, so a ``Detector`` subclass can be registered with ``@register_detector(name)``.
    """

    def decorator(builder: Callable) -> Callable:
        chosen_family = family or getattr(builder, "family", None)
        if chosen_family not in FAMILIES:
            raise ValueError(f"{name!r}: family must be one of {FAMILIES}, got {chosen_family!r}")
        is_learned = learned if learned is not None else getattr(builder, "learned", None)
        if is_learned is None:
            raise ValueError(f"{name!r}: say whether the detector is learned (learned=True/False)")
        existing = _REGISTRY.get(name)
        if existing is not None and existing.builder.__qualname__ != builder.__qualname__:
            raise ValueError(f"detector {name!r} is already registered by {existing.builder!r}")
        _REGISTRY[name] = DetectorSpec(
            name=name,
            builder=builder,
            family=chosen_family,
            learned=bool(is_learned),
            input_size=input_size,
            backbone=backbone,
            description=description or (builder.__doc__ or "").strip().split("\n")[0],
            model_factory=model_factory,
        )
        return builder

    return decorator


def _load_builtin_detectors() -> None:
    import inference.detectors  # noqa: F401 - importing registers the built-ins


def list_detectors(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` filters with shell wildcards (``"siamese-*"``)."""
    _load_builtin_detectors()
    names = sorted(_REGISTRY)
    return fnmatch.filter(names, pattern) if pattern else names


def get_spec(name: str) -> DetectorSpec:
    _load_builtin_detectors()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownDetectorError(f"unknown detector {name!r}; known detectors: {known}") from None


def create_detector(name: str, weights="auto", device="auto", **options):
    """Build detector ``name``.

    ``weights``: ``"auto"`` (checkpoint from the resolver, else ImageNet backbone from the torch
    cache, else ``WeightsUnavailable``), ``"imagenet"``, a checkpoint path, or ``None`` for
    random initialisation. Classical detectors ignore ``weights``. ``device``: ``"auto"``,
    ``"cpu"``, ``"cuda"``... Extra ``options`` go to the builder (e.g. ``input_size``, and for
    the ensemble ``members`` / ``member_weights``).
    """
    spec = get_spec(name)
    return spec.builder(name=name, weights=weights, device=device, **options)


def detector_info(name: str):
    """Static ``DetectorInfo`` for ``name`` without loading weights.

    ``params`` is counted on a network built on the ``meta`` device (no memory, no weights);
    ``weights`` says what ``weights="auto"`` would use now: a provenance string, or
    ``"unavailable"``; ``device`` is ``"none"`` (nothing was placed anywhere).
    """
    from inference.detectors.base import IMAGENET_MEAN, IMAGENET_STD, DetectorInfo

    spec = get_spec(name)
    weights, sha256 = _auto_weights(spec)
    return DetectorInfo(
        name=name,
        family=spec.family,
        learned=spec.learned,
        params=_static_param_count(spec),
        input_size=spec.input_size,
        mean=IMAGENET_MEAN if spec.learned else None,
        std=IMAGENET_STD if spec.learned else None,
        weights=weights,
        weights_sha256=sha256,
        device="none",
        extra={"backbone": spec.backbone, "description": spec.description},
    )


def _static_param_count(spec: DetectorSpec) -> int:
    if spec.model_factory is None:
        return 0
    import torch

    with torch.device("meta"):
        model = spec.model_factory(None)
    return sum(p.numel() for p in model.parameters())


def _auto_weights(spec: DetectorSpec) -> tuple[str, str | None]:
    if not spec.learned:
        return "none", None
    from inference.weights import WeightsUnavailable, resolve_weights

    try:
        source = resolve_weights(spec.name, "auto", backbone=spec.backbone)
    except WeightsUnavailable:
        return "unavailable", None
    return source.provenance, source.sha256
