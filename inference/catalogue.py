"""The registered detectors as the web tier reads them: a torch-free view of ``inference.registry``.

An entry is the registry's own ``DetectorSpec`` (built-ins and plug-ins alike): there is no second
record. The platform's detector plan (``experiments.plans``) adds what a run decides (weights, input
size, where it runs). Training helpers for the UI (start point, time estimate) live here too, torch-free.
"""

from __future__ import annotations

from inference.detector_spec import DetectorSpec
from inference.registry import get_spec, list_detectors
from inference.weights import cached_imagenet_file, imagenet_cache_dir

TRAINING_COST_FACTOR = 3.0  # forward + backward is about three forwards


def catalogue_names() -> list[str]:
    """Every registered detector name, sorted (plug-ins included)."""
    return list_detectors()


def catalogue_entries() -> dict[str, DetectorSpec]:
    """Every registered detector's spec by name, in name order."""
    return {name: get_spec(name) for name in list_detectors()}


def catalogue_entry(name: str) -> DetectorSpec:
    """The registered detector's spec; KeyError listing the known names."""
    if name not in list_detectors():
        raise KeyError(f"unknown detector {name!r}; choose one of {', '.join(catalogue_names())}")
    return get_spec(name)


def __getattr__(name: str):
    # Temporary: `BUILTIN_DETECTORS` was a hand-written table; it is now equal to
    # `catalogue_entries()` (computed when read, so plug-ins are in it). Use catalogue_entries().
    if name == "BUILTIN_DETECTORS":
        return catalogue_entries()
    raise AttributeError(f"module 'inference.catalogue' has no attribute {name!r}")


# --- training, as the UI and CLI describe it ----------------------------------------------------


def training_start_point(name: str) -> str:
    """What training `name` starts from, as the UI and CLI say it."""
    files = get_spec(name).imagenet_files
    if not files:
        return "from scratch (no pretrained backbone for this architecture)"
    found = cached_imagenet_file(files)
    if found:
        return f"ImageNet backbone weights ({found}); decoder from scratch"
    return f"from scratch: no ImageNet weights in {imagenet_cache_dir()} (put {files[0]} there to start from ImageNet)"


def estimated_training_seconds(name: str, pairs: int, epochs: int, size: int = 256) -> float:
    """A rough CPU estimate from the catalogue's per-pair cost (training: ~3x a forward pass)."""
    cost = catalogue_entry(name).relative_cost
    if cost is None:
        raise ValueError(f"detector {name!r} declares no relative_cost: no estimate")
    per_pair_s = cost / 1000 * TRAINING_COST_FACTOR * (size / 256) ** 2
    return per_pair_s * pairs * epochs
