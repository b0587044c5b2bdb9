"""``DetectorSpec``: the static facts about one detector, and how its builder is found.

Torch-free: the web tier reads these facts (through ``inference.catalogue``) without importing
torch. A builder or model factory is either a callable or a ``"package.module:attribute"``
reference that is imported only when the detector is built.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

FAMILIES = ("classical", "siamese", "compare-head", "ensemble")

Reference = Callable | str
FACTS = ("name", "family", "learned", "description", "relative_cost", "input_size", "params")  # what lists show


@dataclass(frozen=True)
class DetectorSpec:
    """What a detector is, known without building it.

    ``input_size``: the default square input of a learned network (``None`` for detectors that
    run at B's size). ``relative_cost``: rough CPU milliseconds per 256x256 pair on the 2-core
    reference machine (``None`` when not measured). ``params``: the network's parameter count
    (0 for detectors without parameters, ``None`` when not declared). ``imagenet_files``:
    torchvision's ImageNet file names for ``backbone``, the default first. ``builder`` is called
    as ``builder(name=..., weights=..., device=..., **options)``; ``model_factory(backbone_state)``
    (learned detectors) builds the bare network, used on the ``meta`` device to count parameters.
    """

    name: str
    family: str
    learned: bool
    builder: Reference
    description: str = ""
    input_size: int | None = None
    relative_cost: float | None = None
    params: int | None = None
    backbone: str | None = None
    imagenet_files: tuple[str, ...] = ()
    model_factory: Reference | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"{self.name!r}: family must be one of {FAMILIES}, got {self.family!r}")
        if not isinstance(self.learned, bool):
            raise ValueError(f"{self.name!r}: say whether the detector is learned (learned=True/False)")
        if self.input_size is not None and (not isinstance(self.input_size, int) or self.input_size < 1):
            raise ValueError(f"{self.name!r}: input_size must be a positive int or None, got {self.input_size!r}")
        if self.params is not None and (not isinstance(self.params, int) or self.params < 0):
            raise ValueError(f"{self.name!r}: params must be a non-negative int or None, got {self.params!r}")
        if self.relative_cost is not None and not self.relative_cost >= 0:
            raise ValueError(f"{self.name!r}: relative_cost must be >= 0 ms, got {self.relative_cost!r}")
        for field_name in ("builder", "model_factory"):
            value = getattr(self, field_name)
            if isinstance(value, str) and not _is_reference(value):
                raise ValueError(f"{self.name!r}: {field_name} {value!r} must look like 'package.module:attribute'")
        object.__setattr__(self, "imagenet_files", tuple(self.imagenet_files))

    def facts(self) -> dict:
        """What the detector is, as the lists show it (torch-free, JSON-safe)."""
        return {field: getattr(self, field) for field in FACTS}

    def resolve_builder(self) -> Callable:
        return resolve(self.builder, what=f"builder of detector {self.name!r}")

    def resolve_model_factory(self) -> Callable | None:
        if self.model_factory is None:
            return None
        return resolve(self.model_factory, what=f"model factory of detector {self.name!r}")

    @property
    def builder_identity(self) -> str:
        """``module:qualname`` of the builder, whether it is a reference or a callable."""
        if isinstance(self.builder, str):
            return self.builder
        module = getattr(self.builder, "__module__", "?")
        return f"{module}:{getattr(self.builder, '__qualname__', repr(self.builder))}"


def _is_reference(value: str) -> bool:
    module, colon, attribute = value.partition(":")
    return bool(colon and module and attribute)


def resolve(reference: Reference, *, what: str) -> Callable:
    """A callable as is; ``"package.module:attribute"`` imported (attribute may be dotted)."""
    if not isinstance(reference, str):
        return reference
    module_name, _, attribute = reference.partition(":")
    try:
        value = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(f"cannot import module {module_name!r} for the {what}: {error}") from error
    try:
        for part in attribute.split("."):
            value = getattr(value, part)
    except AttributeError:
        raise ImportError(f"module {module_name!r} has no {attribute!r} (the {what})") from None
    return value
