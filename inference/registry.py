"""Detector registry: the one source of detector facts, and the way detectors are built.

Importing this module does not import torch or any detector: the built-ins are declarations
(``inference.builtin_detectors``) whose builders are imported when a detector is created.
Listing names, ``get_spec`` and ``inference.catalogue`` stay torch-free.

A plug-in registers its own detectors with the decorator (timm style)::

    @register_detector("my-detector", family="classical", learned=False, relative_cost=3)
    def build_my_detector(*, name, weights, device, **options) -> Detector: ...

and is loaded with ``load_detector_modules(["my_package.detectors"])``, or, for every process
(the CLI, web tier, workers), by listing its modules, comma-separated, in the environment
variable ``DIFFPLATFORM_DETECTOR_MODULES``; the registry imports them the first time it is
asked for a detector. A builder is called as ``builder(name=..., weights=..., device=...,
**options)``.
"""

from __future__ import annotations

import fnmatch
import importlib
import os
from collections.abc import Callable, Iterable

from inference.builtin_detectors import BUILTIN_SPECS
from inference.detector_spec import FAMILIES, DetectorSpec

__all__ = [
    "FAMILIES",
    "PLUGIN_MODULES_VARIABLE",
    "DetectorSpec",
    "UnknownDetectorError",
    "create_detector",
    "detector_info",
    "get_spec",
    "list_detectors",
    "load_detector_modules",
    "meta_param_count",
    "register_detector",
]

PLUGIN_MODULES_VARIABLE = "DIFFPLATFORM_DETECTOR_MODULES"

_REGISTRY: dict[str, DetectorSpec] = {spec.name: spec for spec in BUILTIN_SPECS}
_plugins_loaded = False


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
    relative_cost: float | None = None,
    description: str = "",
    params: int | None = None,
    backbone: str | None = None,
    imagenet_files: Iterable[str] = (),
    model_factory: Callable | str | None = None,
) -> Callable:
    """Decorator registering ``builder`` under ``name``; a name can be registered once.

    ``family`` and ``learned`` default to the builder's own ``family`` / ``learned``
    attributes, so a ``Detector`` subclass can be registered with ``@register_detector(name)``.
    ``description`` defaults to the first line of the builder's docstring; ``params`` to 0 for
    detectors that are not learned.
    """

    def decorator(builder: Callable) -> Callable:
        is_learned = learned if learned is not None else getattr(builder, "learned", None)
        if is_learned is None:
            raise ValueError(f"{name!r}: say whether the detector is learned (learned=True/False)")
        spec = DetectorSpec(
            name=name,
            family=family or getattr(builder, "family", None),
            learned=bool(is_learned),
            builder=builder,
            description=description or (builder.__doc__ or "").strip().split("\n")[0],
            input_size=input_size,
            relative_cost=relative_cost,
            params=params if params is not None or is_learned else 0,
            backbone=backbone,
            imagenet_files=tuple(imagenet_files),
            model_factory=model_factory,
        )
        _add(spec)
        return builder

    return decorator


def _add(spec: DetectorSpec) -> None:
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing.builder_identity != spec.builder_identity:
        raise ValueError(f"detector {spec.name!r} is already registered by {existing.builder_identity}")
    _REGISTRY[spec.name] = spec


def load_detector_modules(modules: Iterable[str]) -> None:
    """Import each plug-in module (importing one registers its detectors with the decorator)."""
    _import_plugins(modules, origin="load_detector_modules()")


def _import_plugins(modules: Iterable[str], *, origin: str) -> None:
    for module in modules:
        module = module.strip()
        if not module:
            continue
        try:
            importlib.import_module(module)
        except (ImportError, SyntaxError) as error:
            raise ImportError(
                f"cannot import detector plug-in module {module!r} (listed in {origin}): "
                f"{type(error).__name__}: {error}",
                name=module,
            ) from error


def _ensure_plugins() -> None:
    """Import the modules listed in ``DIFFPLATFORM_DETECTOR_MODULES``, once per process."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True  # set first: a plug-in may list detectors while it is imported
    modules = os.environ.get(PLUGIN_MODULES_VARIABLE, "").split(",")
    try:
        _import_plugins(modules, origin=f"the environment variable {PLUGIN_MODULES_VARIABLE}")
    except ImportError:
        _plugins_loaded = False  # fail again next time rather than run without the plug-in
        raise


def list_detectors(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; ``pattern`` filters with shell wildcards (``"siamese-*"``)."""
    _ensure_plugins()
    names = sorted(_REGISTRY)
    return fnmatch.filter(names, pattern) if pattern else names


def get_spec(name: str) -> DetectorSpec:
    _ensure_plugins()
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
    the ensemble ``members`` / ``member_weights``). ``scaling`` (``"auto"`` | ``"resize"`` |
    ``"tile"``, or an ``inference.tiling.Scaling``) says how learned detectors, and an ensemble's
    learned members, fit a pair to their input size; other detectors ignore it.
    """
    spec = get_spec(name)
    scaling = options.pop("scaling", None)
    if scaling is not None:
        from inference.tiling import Scaling

        scaling = Scaling.of(scaling)  # refused before anything is built
    detector = spec.resolve_builder()(name=name, weights=weights, device=device, **options)
    return detector if scaling is None else detector.set_scaling(scaling)


def detector_info(name: str):
    """Static ``DetectorInfo`` for ``name`` without building it or loading weights.

    The facts are the spec's; ``params`` is the declared count (counted on the ``meta`` device
    when a plug-in declares none); ``weights`` says what ``weights="auto"`` would use now: a
    provenance string, or ``"unavailable"``; ``device`` is ``"none"`` (nothing was placed).
    """
    from inference.detectors.base import IMAGENET_MEAN, IMAGENET_STD, DetectorInfo

    spec = get_spec(name)
    weights, sha256 = _auto_weights(spec)
    params = spec.params
    if params is None:
        params = meta_param_count(name) if spec.model_factory is not None else 0
    return DetectorInfo(
        name=name,
        family=spec.family,
        learned=spec.learned,
        params=params,
        input_size=spec.input_size,
        mean=IMAGENET_MEAN if spec.learned else None,
        std=IMAGENET_STD if spec.learned else None,
        weights=weights,
        weights_sha256=sha256,
        device="none",
        extra={"backbone": spec.backbone, "description": spec.description},
    )


def meta_param_count(name: str) -> int:
    """Parameters of ``name``'s network built on the ``meta`` device (no memory, no weights).

    Imports torch and the detector's module; 0 for detectors without a model factory.
    """
    factory = get_spec(name).resolve_model_factory()
    if factory is None:
        return 0
    import torch

    with torch.device("meta"):
        model = factory(None)
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
