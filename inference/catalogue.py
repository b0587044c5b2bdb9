"""The detectors as the web tier sees them: a torch-free view of ``inference.registry``.

The web tier lists detectors, validates experiment choices and routes tasks to queues without
importing torch. Every entry is generated from the registry's spec (built-ins and plug-ins
alike); there is no second table. Training helpers for the UI (start point, time estimate)
live here too, also torch-free.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

from inference.registry import get_spec, list_detectors

TRAINING_COST_FACTOR = 3.0  # forward + backward is about three forwards


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    family: str  # classical | siamese | compare-head | ensemble
    learned: bool
    description: str
    relative_cost: float | None  # rough CPU time per 256x256 pair, in ms, measured on the 2-core reference machine
    input_size: int | None  # default square input of a learned network; None: runs at B's size
    params: int | None  # parameter count (0 without parameters, None if a plug-in does not say)

    @property
    def queue(self) -> str:
        """Celery queue: learned models go to `gpu` workers, everything else to `cpu`."""
        return "gpu" if self.learned else "cpu"

    def as_dict(self) -> dict:
        return {**asdict(self), "queue": self.queue}


def _entry(name: str) -> CatalogueEntry:
    spec = get_spec(name)
    return CatalogueEntry(
        name=spec.name,
        family=spec.family,
        learned=spec.learned,
        description=spec.description,
        relative_cost=spec.relative_cost,
        input_size=spec.input_size,
        params=spec.params,
    )


def catalogue_names() -> list[str]:
    """Every registered detector name, sorted (plug-ins included)."""
    return list_detectors()


def catalogue_entries() -> dict[str, CatalogueEntry]:
    """Every registered detector's entry by name, in name order."""
    return {name: _entry(name) for name in list_detectors()}


def catalogue_entry(name: str) -> CatalogueEntry:
    if name not in list_detectors():
        raise KeyError(f"unknown detector {name!r}; choose one of {', '.join(catalogue_names())}")
    return _entry(name)


def __getattr__(name: str):
    # Temporary: `BUILTIN_DETECTORS` was a hand-written table; it is now equal to
    # `catalogue_entries()` (computed when read, so plug-ins are in it). Use catalogue_entries().
    if name == "BUILTIN_DETECTORS":
        return catalogue_entries()
    raise AttributeError(f"module 'inference.catalogue' has no attribute {name!r}")


# --- training, as the UI and CLI describe it ----------------------------------------------------


def torch_hub_checkpoints_dir() -> Path:
    """Where torchvision keeps downloaded weights: `torch.hub.get_dir()/checkpoints`, without torch."""
    if os.environ.get("TORCH_HOME"):
        base = Path(os.environ["TORCH_HOME"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return base / "hub" / "checkpoints"


def training_start_point(name: str) -> str:
    """What training `name` starts from, as the UI and CLI say it."""
    files = get_spec(name).imagenet_files
    if not files:
        return "from scratch (no pretrained backbone for this architecture)"
    folder = torch_hub_checkpoints_dir()
    found = next((f for f in files if (folder / f).is_file()), None)
    if found:
        return f"ImageNet backbone weights ({folder / found}); decoder from scratch"
    return f"from scratch: no ImageNet weights in {folder} (put {files[0]} there to start from ImageNet)"


def estimated_training_seconds(name: str, pairs: int, epochs: int, size: int = 256) -> float:
    """A rough CPU estimate from the catalogue's per-pair cost (training: ~3x a forward pass)."""
    cost = catalogue_entry(name).relative_cost
    if cost is None:
        raise ValueError(f"detector {name!r} declares no relative_cost: no estimate")
    per_pair_s = cost / 1000 * TRAINING_COST_FACTOR * (size / 256) ** 2
    return per_pair_s * pairs * epochs
