"""Which weights a run uses for a detector, and a local copy of checkpoint files for workers."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from experiments import storage
from experiments.checkpoints import selectors
from experiments.errors import ServiceError
from experiments.models import ModelCheckpoint


@dataclass(frozen=True)
class WeightsChoice:
    """What to pass to `create_detector(weights=...)`, and a stable key for caches."""

    weights: object  # "auto" | None (random) | local checkpoint path
    ref: str  # "auto" | "random" | "checkpoint:<sha256>"


def local_checkpoint_path(checkpoint: ModelCheckpoint) -> Path:
    """The checkpoint's file on this machine (copied out of storage once, verified by sha256)."""
    folder = Path(settings.VAR_DIR) / "checkpoint-cache"
    path = folder / f"{checkpoint.sha256}{Path(checkpoint.file_key).suffix or '.pt'}"
    if path.exists():
        return path
    data = storage.read_bytes(checkpoint.file_key)
    if hashlib.sha256(data).hexdigest() != checkpoint.sha256:
        raise ServiceError(f"Checkpoint {checkpoint.sha256[:12]} in storage does not match its hash.")
    folder.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_bytes(data)
    partial.replace(path)
    return path


def weights_for(user, detector: str, choice: str = "auto", learned: bool = True) -> WeightsChoice:
    """Resolve an experiment's weights choice for one detector into something loadable."""
    if not learned:
        return WeightsChoice("auto", "none")
    if choice == "random":
        return WeightsChoice(None, "random")
    if choice.startswith("checkpoint:"):
        sha = choice.split(":", 1)[1]
        checkpoint = selectors.checkpoints_visible_to(user).filter(sha256=sha, detector=detector).first()
        if checkpoint is None:
            raise ServiceError(f"Checkpoint {sha[:12]} for {detector} is not available to you.")
        return WeightsChoice(local_checkpoint_path(checkpoint), checkpoint.provenance)
    checkpoint = selectors.newest_checkpoint(user, detector)
    if checkpoint is not None:
        return WeightsChoice(local_checkpoint_path(checkpoint), checkpoint.provenance)
    return WeightsChoice("auto", "auto")
