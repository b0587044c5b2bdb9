"""The plan of a registered detector: what it loads under an experiment's weights choice (the one
place that says what ``weights="auto"`` means on the platform), whether it can run, the size it runs
at and, on the worker, its device and precision.

``auto`` picks the owner's newest checkpoint for the detector, else a public (shipped) one, else its
ImageNet backbone file when it is in the torch cache; otherwise the detector is unavailable, with the
reason and the command that fixes it. ``random`` is a seeded random initialisation; a pinned
``checkpoint:<sha256>`` must be one the owner can see. Torch-free: the ImageNet file is looked for by
name (`inference.weights.cached_imagenet_file`)."""

import experiments.plans.worker_side as worker
from experiments.checkpoints import selectors
from experiments.errors import ServiceError
from experiments.plans.record import AVAILABLE, Availability, DetectorPlan, WeightsPlan
from inference.detectors.base import DEFAULT_INPUT_SIZE
from inference.weights import cached_imagenet_file, imagenet_cache_dir

TRAIN_COMMAND = "python manage.py train_detector {name} --dataset <name>"


def registered_plan(owner, spec, *, choice: str, experiment=None, on_worker: bool = False) -> DetectorPlan:
    """The plan of registered detector `spec` for `owner` under weights `choice` (in `experiment`,
    when given: its input-size override and scaling). On the worker a chosen checkpoint is copied to
    this machine (`weights.load` is its path, or for an upload a `WeightsSource` of its safetensors copy:
    `worker_side.checkpoint_weights`; its own input size is read) and a pinned checkpoint
    the owner cannot see is a `ServiceError`; elsewhere it is an unavailable plan saying so."""
    described = described_by(spec)
    weights, availability = _weights(owner, spec, choice, on_worker=on_worker)
    # The size a learned detector runs at, and why: the experiment's override, the checkpoint's
    # meta["input_size"] (read on the worker, where its file is), the registry's default, or the
    # library's default for a plug-in that declares none. Detectors that are not learned: none.
    size, size_source = None, None
    if spec.learned:
        override = experiment.input_size if experiment is not None else None
        trained = None if override else worker.checkpoint_input_size(weights)
        sizes = ((override, "override"), (trained, "checkpoint"), (spec.input_size, "registry"))
        size, size_source = next(((int(v), why) for v, why in sizes if v), (DEFAULT_INPUT_SIZE, "default"))
    device = (worker.inference_device() if spec.learned else "cpu") if on_worker else None
    return DetectorPlan(
        **described, kind="registered", weights=weights, input_size=size,
        input_size_source=size_source, scaling=experiment.scaling if experiment is not None else "auto",
        queue="gpu" if spec.learned else "cpu", availability=availability, device=device,
        precision=worker.expected_precision(spec.learned, device) if on_worker else None,
    )  # fmt: skip


def described_by(spec) -> dict:
    """The plan's description fields as a registry spec (`inference.detector_spec.DetectorSpec`) fills them."""
    facts = spec.facts()
    facts["default_input_size"] = facts.pop("input_size")
    return facts


def _weights(owner, spec, choice: str, *, on_worker: bool) -> tuple[WeightsPlan, Availability]:
    if not spec.learned:
        return WeightsPlan(choice, "none", "none", "auto"), AVAILABLE
    if choice == "random":
        return WeightsPlan(choice, "random", "random", None), AVAILABLE
    signed_in = bool(getattr(owner, "is_authenticated", False))
    if choice.startswith("checkpoint:"):
        sha = choice.split(":", 1)[1]
        visible = selectors.checkpoints_visible_to(owner).filter(sha256=sha, detector=spec.name) if signed_in else None
        checkpoint, source = (visible.first() if visible is not None else None), "pinned checkpoint"
        if checkpoint is None:
            message = f"Checkpoint {sha[:12]} for {spec.name} is not available to you."
            if on_worker:
                raise ServiceError(message)
            return WeightsPlan(choice, "unavailable", choice), Availability(False, message)
    else:
        checkpoint = selectors.newest_checkpoint(owner if signed_in else None, spec.name)
        own = (
            checkpoint is not None
            and checkpoint.owner_id is not None
            and checkpoint.owner_id == getattr(owner, "pk", None)
        )
        source = "own checkpoint" if own else "public checkpoint"
    if checkpoint is not None:
        load = worker.checkpoint_weights(checkpoint) if on_worker else None
        return WeightsPlan(choice, source, checkpoint.provenance, load, checkpoint), AVAILABLE
    if cached_imagenet_file(spec.imagenet_files) is not None:
        return WeightsPlan(choice, "imagenet", "auto", "auto"), AVAILABLE
    train = f"`{TRAIN_COMMAND.format(name=spec.name)}`"
    if spec.imagenet_files:
        folder = imagenet_cache_dir()
        why = f"no trained weights and no ImageNet backbone ({spec.imagenet_files[0]}) in {folder}: run {train} or put the file there"
    else:
        why = f"no trained weights (and no ImageNet backbone for this architecture): run {train}"
    return WeightsPlan(choice, "unavailable", "auto", "auto"), Availability(False, why)


def is_trained(weights: WeightsPlan) -> bool:
    """Whether a learned detector's weights are a trained platform checkpoint (an ensemble takes only those)."""
    return weights.checkpoint is not None
