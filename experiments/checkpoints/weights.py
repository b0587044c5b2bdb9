"""Which weights a run uses for a detector, and a local copy of checkpoint files for workers."""

from dataclasses import dataclass
from pathlib import Path

from experiments.checkpoints import selectors
from experiments.checkpoints.local_copies import local_copy
from experiments.errors import ServiceError
from experiments.models import ModelCheckpoint


@dataclass(frozen=True)
class WeightsChoice:
    """What to pass to `create_detector(weights=...)`, and a stable key for caches."""

    weights: object  # "auto" | None (random) | local checkpoint path
    ref: str  # "auto" | "random" | "checkpoint:<sha256>"


def local_checkpoint_path(checkpoint: ModelCheckpoint) -> Path:
    """The checkpoint's (or uploaded model's) file on this machine, copied out of storage and verified
    by size and sha256 (`local_copies`)."""
    suffix = Path(checkpoint.file_key).suffix or ".pt"
    return local_copy(checkpoint.file_key, checkpoint.sha256, suffix, getattr(checkpoint, "size_bytes", None))


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


def ensemble_members(experiment) -> list[tuple[str, str]]:
    """The members of `experiment`'s ensemble as ``(detector, weights choice)``, in order; torch-free
    and cheap: the outbox queues the ensemble by them, the engine builds it from them.

    Each member has the choice it has alone in the same run: ``experiment.detector_weights[member]``
    when the member is also among the experiment's detectors, else ``"auto"``. The members are the
    classical ``ENSEMBLE_CLASSICAL_MEMBERS`` and every learned detector whose choice resolves to a
    trained platform checkpoint for the experiment's owner (pinned, or under ``"auto"`` the one
    `selectors.newest_checkpoint` picks); a learned detector with only random or ImageNet-backbone
    weights never joins. An experiment cannot name members or mixing weights (validation accepts
    only a weights choice per detector), and the ensemble's own choice does not change them."""
    from inference.builtin_detectors import ENSEMBLE_CLASSICAL_MEMBERS
    from inference.catalogue import catalogue_entries

    def choice_of(name: str) -> str:
        return str(experiment.detector_weights.get(name, "auto")) if name in experiment.detectors else "auto"

    members = [(name, "auto") for name in ENSEMBLE_CLASSICAL_MEMBERS]  # classical: no weights to choose
    for name, entry in catalogue_entries().items():
        if not entry.learned or entry.family == "ensemble":
            continue
        choice = choice_of(name)
        if choice.startswith("checkpoint:") or (
            choice == "auto" and selectors.newest_checkpoint(experiment.owner, name) is not None
        ):
            members.append((name, choice))
    return members
