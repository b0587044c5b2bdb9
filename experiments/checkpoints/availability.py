"""Whether a detector can run for a user with weights "auto": the one rule the new-experiment page,
the API's detector list, validation (and so the CLI) use.

A classical detector (the ensemble included: its classical members always run) is always available.
A learned detector is available when `weights="auto"` would load trained or pretrained weights: a
platform checkpoint the user can see (`selectors.newest_checkpoint`, what `auto` picks) or its ImageNet
backbone file in the torch cache. Otherwise it is unavailable, with the reason and the command that
fixes it. Torch-free: the ImageNet file is looked for by name in `torch_hub_checkpoints_dir()`.
"""

from dataclasses import dataclass

from experiments.checkpoints import selectors
from experiments.detectors import BROUGHT_IN_FAMILIES, detector_entry
from inference.catalogue import torch_hub_checkpoints_dir
from inference.registry import get_spec

TRAIN_COMMAND = "python manage.py train_detector {name} --dataset <name>"


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""  # why not, and what fixes it; empty when available


def detector_availability(user, name: str) -> Availability:
    """Whether `name` with weights "auto" would load trained or pretrained weights for `user`."""
    entry = detector_entry(user, name)
    if not entry.learned or entry.family in ("ensemble", *BROUGHT_IN_FAMILIES):  # brought in: listed once ready
        return Availability(True)
    owner = user if getattr(user, "is_authenticated", False) else None
    if selectors.newest_checkpoint(owner, name) is not None:
        return Availability(True)
    files = tuple(get_spec(name).imagenet_files)
    folder = torch_hub_checkpoints_dir()
    if any((folder / filename).is_file() for filename in files):
        return Availability(True)
    train = f"`{TRAIN_COMMAND.format(name=name)}`"
    if files:
        return Availability(
            False,
            f"no trained weights and no ImageNet backbone ({files[0]}) in {folder}: run {train} or put the file there",
        )
    return Availability(False, f"no trained weights (and no ImageNet backbone for this architecture): run {train}")


def unavailable_with_auto(user, detectors, detector_weights) -> dict[str, str]:
    """The chosen detectors that would run with weights "auto" but cannot: {name: reason}.
    An explicit "random" or "checkpoint:<sha256>" choice is not refused here."""
    refused = {}
    for name in detectors:
        if str((detector_weights or {}).get(name, "auto")) != "auto":
            continue
        availability = detector_availability(user, name)
        if not availability.available:
            refused[name] = availability.reason
    return refused
