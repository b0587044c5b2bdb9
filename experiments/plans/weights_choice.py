"""What a registered detector loads under an experiment's weights choice: the one place that says
what ``weights="auto"`` means on the platform, and whether the detector can run.

``auto`` picks the owner's newest checkpoint for the detector, else a public (shipped) one, else its
ImageNet backbone file when it is in the torch cache; otherwise the detector is unavailable, with the
reason and the command that fixes it. ``random`` is a seeded random initialisation; a pinned
``checkpoint:<sha256>`` must be one the owner can see. Torch-free: the ImageNet file is looked for by
name (`inference.weights.cached_imagenet_file`)."""

from experiments.checkpoints import selectors
from experiments.errors import ServiceError
from experiments.plans.record import AVAILABLE, Availability, WeightsPlan
from inference.weights import cached_imagenet_file, imagenet_cache_dir

TRAIN_COMMAND = "python manage.py train_detector {name} --dataset <name>"


def choose_weights(owner, spec, choice: str, *, on_worker: bool) -> tuple[WeightsPlan, Availability]:
    """`(weights, availability)` of registered detector `spec` for `owner` under `choice`. On the
    worker a chosen checkpoint is copied to this machine (`load` is its path) and a pinned checkpoint
    the owner cannot see is a `ServiceError`; elsewhere it is an unavailable plan saying so."""
    if not spec.learned:
        return WeightsPlan(choice, "none", "none", "auto"), AVAILABLE
    if choice == "random":
        return WeightsPlan(choice, "random", "random", None), AVAILABLE
    if choice.startswith("checkpoint:"):
        return _pinned(owner, spec.name, choice, on_worker=on_worker)
    checkpoint = selectors.newest_checkpoint(owner if _signed_in(owner) else None, spec.name)
    if checkpoint is not None:
        own = checkpoint.owner_id is not None and checkpoint.owner_id == getattr(owner, "pk", None)
        source = "own checkpoint" if own else "public checkpoint"
        return _checkpoint(choice, source, checkpoint, on_worker=on_worker), AVAILABLE
    if cached_imagenet_file(spec.imagenet_files) is not None:
        return WeightsPlan(choice, "imagenet", "auto", "auto"), AVAILABLE
    return WeightsPlan(choice, "unavailable", "auto", "auto"), _unavailable(spec)


def _signed_in(owner) -> bool:
    return bool(getattr(owner, "is_authenticated", False))


def _pinned(owner, name: str, choice: str, *, on_worker: bool) -> tuple[WeightsPlan, Availability]:
    sha = choice.split(":", 1)[1]
    visible = selectors.checkpoints_visible_to(owner) if _signed_in(owner) else None
    checkpoint = visible.filter(sha256=sha, detector=name).first() if visible is not None else None
    if checkpoint is None:
        message = f"Checkpoint {sha[:12]} for {name} is not available to you."
        if on_worker:
            raise ServiceError(message)
        return WeightsPlan(choice, "unavailable", choice), Availability(False, message)
    return _checkpoint(choice, "pinned checkpoint", checkpoint, on_worker=on_worker), AVAILABLE


def _checkpoint(choice: str, source: str, checkpoint, *, on_worker: bool) -> WeightsPlan:
    load = None
    if on_worker:
        from experiments.checkpoints.files import local_checkpoint_path

        load = local_checkpoint_path(checkpoint)
    return WeightsPlan(choice, source, checkpoint.provenance, load, checkpoint)


def _unavailable(spec) -> Availability:
    train = f"`{TRAIN_COMMAND.format(name=spec.name)}`"
    if spec.imagenet_files:
        return Availability(
            False,
            f"no trained weights and no ImageNet backbone ({spec.imagenet_files[0]}) in {imagenet_cache_dir()}: "
            f"run {train} or put the file there",
        )
    return Availability(False, f"no trained weights (and no ImageNet backbone for this architecture): run {train}")


def is_trained(weights: WeightsPlan) -> bool:
    """Whether a learned detector's weights are a trained platform checkpoint (an ensemble takes only those)."""
    return weights.checkpoint is not None
