"""Writes. Every change to the domain goes through a function here (`<entity>_<action>`)."""

import hashlib
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from experiments import storage
from experiments.errors import InvalidState, ServiceError
from experiments.models import (
    Dataset,
    Experiment,
    ImagePair,
    Run,
    RunState,
    Split,
    TrainingJob,
)
from inference.catalogue import catalogue_entry


# --------------------------------------------------------------------------- datasets and pairs
@transaction.atomic
def dataset_create(*, owner, name: str, description: str = "", hidden: bool = False) -> Dataset:
    name = name.strip()
    if not name:
        raise ServiceError("A dataset needs a name.", field="name")
    if Dataset.objects.filter(owner=owner, name=name).exists():
        raise ServiceError(f"You already have a dataset named {name!r}; choose another name.", field="name")
    return Dataset.objects.create(owner=owner, name=name, description=description, hidden=hidden)


def dataset_delete(*, dataset: Dataset) -> None:
    if dataset.experiments.exists():
        raise InvalidState("Delete the experiments that use this dataset first.")
    with transaction.atomic():
        dataset_id = dataset.pk
        dataset.delete()
        transaction.on_commit(lambda: storage.delete_prefix(storage.dataset_key(dataset_id)))


@dataclass
class CheckedPair:
    """A pair that passed validation, ready to store: bytes plus what was learned reading them."""

    name: str
    a_bytes: bytes
    b_bytes: bytes
    label_png: bytes | None
    a_size: tuple[int, int]
    b_size: tuple[int, int]
    category: str = ""
    split: str = ""
    warnings: list[str] = field(default_factory=list)


def pair_check(
    *, name: str, a_bytes: bytes, b_bytes: bytes, label_bytes: bytes | None = None, category: str = "", split: str = ""
) -> CheckedPair:
    """Validate one pair without writing anything. Raises ServiceError naming the bad file."""
    from inference.images import ImageError, encode_png, load_image, load_mask

    name = name.strip()
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise ServiceError(f"Pair name {name!r} is not allowed; use letters, digits, - and _.", field="name")
    if split not in Split.values:
        raise ServiceError(f"Split must be one of train, val, test or empty, not {split!r}.", field="split")
    decoded = {}
    for role, data in (("image_a", a_bytes), ("image_b", b_bytes)):
        try:
            decoded[role] = load_image(data, max_pixels=settings.MAX_IMAGE_PIXELS)
        except ImageError as exc:
            raise ServiceError(f"{role} of pair {name!r}: {exc}", field=role) from None
    a, b = decoded["image_a"], decoded["image_b"]
    warnings = []
    if a.shape[:2] != b.shape[:2]:
        warnings.append(
            f"A is {a.shape[1]}x{a.shape[0]} and B is {b.shape[1]}x{b.shape[0]}: A is aligned onto B "
            "when alignment is on, else resized to B's size."
        )
    label_png = None
    if label_bytes is not None:
        try:
            mask, label_warnings = load_mask(label_bytes, size=(b.shape[1], b.shape[0]))
        except ImageError as exc:
            raise ServiceError(f"label of pair {name!r}: {exc}", field="label") from None
        warnings.extend(label_warnings)
        label_png = encode_png(mask.astype("uint8") * 255)
    return CheckedPair(
        name=name,
        a_bytes=a_bytes,
        b_bytes=b_bytes,
        label_png=label_png,
        a_size=(a.shape[1], a.shape[0]),
        b_size=(b.shape[1], b.shape[0]),
        category=category.strip()[:100],
        split=split,
        warnings=warnings,
    )


IMAGE_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpg"),
    (b"BM", "bmp"),
    (b"II*\x00", "tif"),
    (b"MM\x00*", "tif"),
    (b"GIF8", "gif"),
)


def image_extension(data: bytes) -> str:
    """File extension for stored originals, so media are served with the right content type."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return next((ext for signature, ext in IMAGE_SIGNATURES if data.startswith(signature)), "bin")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pairs_store(*, dataset: Dataset, checked: list[CheckedPair]) -> list[ImagePair]:
    """Store already-checked pairs: all of them or, on any failure, none (no rows, no files)."""
    names = [c.name for c in checked]
    if len(set(names)) != len(names):
        raise ServiceError("Two pairs have the same name; pair names must be unique.", field="name")
    taken = set(dataset.pairs.filter(name__in=names).values_list("name", flat=True))
    if taken:
        raise ServiceError(f"The dataset already has pairs named {sorted(taken)}.", field="name")
    written: list[str] = []
    try:
        with transaction.atomic():
            pairs = [_pair_store(dataset, c, written) for c in checked]
    except BaseException:
        storage.delete_keys(written)
        raise
    return pairs


def _pair_store(dataset: Dataset, c: CheckedPair, written: list[str]) -> ImagePair:
    a_sha, b_sha = _sha256(c.a_bytes), _sha256(c.b_bytes)
    folder = f"pairs/{_sha256(c.name.encode())[:16]}"
    keys = {
        "a": storage.dataset_key(dataset.pk, folder, f"a.{image_extension(c.a_bytes)}"),
        "b": storage.dataset_key(dataset.pk, folder, f"b.{image_extension(c.b_bytes)}"),
        "label": storage.dataset_key(dataset.pk, folder, "label.png") if c.label_png else "",
    }
    for role, data in (("a", c.a_bytes), ("b", c.b_bytes), ("label", c.label_png)):
        if data is not None:
            written.append(storage.save_bytes(keys[role], data))
    return ImagePair.objects.create(
        dataset=dataset,
        name=c.name,
        category=c.category,
        split=c.split,
        image_a=keys["a"],
        image_b=keys["b"],
        label=keys["label"],
        a_sha256=a_sha,
        b_sha256=b_sha,
        label_sha256=_sha256(c.label_png) if c.label_png else "",
        a_width=c.a_size[0],
        a_height=c.a_size[1],
        b_width=c.b_size[0],
        b_height=c.b_size[1],
        a_bytes=len(c.a_bytes),
        b_bytes=len(c.b_bytes),
    )


def pair_create(
    *,
    dataset: Dataset,
    name: str,
    a_bytes: bytes,
    b_bytes: bytes,
    label_bytes: bytes | None = None,
    category: str = "",
    split: str = "",
) -> ImagePair:
    checked = pair_check(
        name=name, a_bytes=a_bytes, b_bytes=b_bytes, label_bytes=label_bytes, category=category, split=split
    )
    return pairs_store(dataset=dataset, checked=[checked])[0]


# --------------------------------------------------------------------------- experiments
WEIGHT_CHOICES_HELP = 'use "auto", "random" or "checkpoint:<sha256>"'


def _validate_detectors(detectors, detector_weights) -> list[str]:
    if not isinstance(detectors, list | tuple) or not detectors:
        raise ServiceError("Choose at least one detector.", field="detectors")
    names = []
    for name in detectors:
        try:
            catalogue_entry(str(name))
        except KeyError as exc:
            raise ServiceError(str(exc.args[0]), field="detectors") from None
        if name not in names:
            names.append(str(name))
    for name, choice in (detector_weights or {}).items():
        if name not in names:
            raise ServiceError(
                f"Weights given for {name!r}, which is not among the detectors.", field="detector_weights"
            )
        if not (choice in ("auto", "random") or str(choice).startswith("checkpoint:")):
            raise ServiceError(f"Weights {choice!r} for {name}: {WEIGHT_CHOICES_HELP}.", field="detector_weights")
    return names


@transaction.atomic
def experiment_create(
    *,
    owner,
    dataset: Dataset,
    name: str,
    detectors,
    align: bool = False,
    threshold: float = 0.5,
    input_size: int = 256,
    seed: int = 0,
    baseline_detector: str = "",
    detector_weights=None,
) -> Experiment:
    if dataset.owner_id != owner.pk and not owner.is_staff:
        raise ServiceError("Dataset not found.", field="dataset", status=404)
    names = _validate_detectors(detectors, detector_weights)
    if not 0.0 < float(threshold) < 1.0:
        raise ServiceError("Threshold must be between 0 and 1 (exclusive).", field="threshold")
    if not 32 <= int(input_size) <= 1024:
        raise ServiceError("Input size must be between 32 and 1024 pixels.", field="input_size")
    if baseline_detector and baseline_detector not in names:
        raise ServiceError("The baseline must be one of the chosen detectors.", field="baseline_detector")
    return Experiment.objects.create(
        owner=owner,
        dataset=dataset,
        name=name.strip() or f"{dataset.name}: {', '.join(names)}",
        detectors=names,
        align=bool(align),
        threshold=float(threshold),
        input_size=int(input_size),
        seed=int(seed),
        baseline_detector=baseline_detector or names[0],
        detector_weights=dict(detector_weights or {}),
    )


def experiment_delete(*, experiment: Experiment) -> None:
    if experiment.runs.filter(state__in=[RunState.QUEUED, RunState.RUNNING]).exists():
        raise InvalidState("Cancel the experiment's active runs before deleting it.")
    run_ids = list(experiment.runs.values_list("pk", flat=True))
    with transaction.atomic():
        experiment.delete()
        transaction.on_commit(lambda: [storage.delete_prefix(storage.run_key(pk)) for pk in run_ids])


# --------------------------------------------------------------------------- runs
ALLOWED_TRANSITIONS = {
    RunState.QUEUED: {RunState.RUNNING, RunState.CANCELLED, RunState.FAILED},
    RunState.RUNNING: {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED},
    RunState.FAILED: {RunState.QUEUED},
    RunState.CANCELLED: {RunState.QUEUED},
    RunState.SUCCEEDED: set(),
}


def _enqueue_on_commit(run_id: int) -> None:
    from experiments import outbox

    transaction.on_commit(lambda: outbox.dispatch(Run, run_id))


@transaction.atomic
def run_start(*, experiment: Experiment, cloned_from: Run | None = None) -> Run:
    pair_count = experiment.dataset.pairs.count()
    if pair_count == 0:
        raise ServiceError("The dataset has no image pairs yet; upload pairs before starting a run.")
    run = Run.objects.create(
        experiment=experiment,
        progress_total=pair_count * len(experiment.detectors),
        progress={"stage": "queued", "detectors": {}},
        cloned_from=cloned_from,
    )
    _enqueue_on_commit(run.pk)
    return run


def work_transition(model, object_id: int, new_state: str, **fields):
    """Move a run or training job to `new_state` if the state machine allows it (row locked)."""
    with transaction.atomic():
        work = model.objects.select_for_update().get(pk=object_id)
        if new_state not in ALLOWED_TRANSITIONS[work.state]:
            raise InvalidState(f"A {work.state} {model._meta.verbose_name} cannot become {new_state}.")
        work.state = new_state
        now = timezone.now()
        if new_state == RunState.RUNNING and work.started_at is None:
            work.started_at = now
        if new_state in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED):
            work.finished_at = now
        for name, value in fields.items():
            setattr(work, name, value)
        work.save()
    return work


def run_transition(run_id: int, new_state: str, **fields) -> Run:
    from experiments.progress import publish_run_state

    run = work_transition(Run, run_id, new_state, **fields)
    publish_run_state(run)
    return run


def run_cancel(*, run: Run) -> Run:
    """Cooperative: workers check between batches; a queued run is cancelled at once."""
    if run.is_finished:
        raise InvalidState(f"The run already {run.state}; only queued or running runs can be cancelled.")
    Run.objects.filter(pk=run.pk).update(cancel_requested=True)
    if run.state == RunState.QUEUED:
        return run_transition(run.pk, RunState.CANCELLED, cancel_requested=True)
    run.refresh_from_db()
    return run


@transaction.atomic
def run_retry(*, run: Run) -> Run:
    """Queue a failed or cancelled run again; results already stored are kept and skipped."""
    if run.state not in (RunState.FAILED, RunState.CANCELLED):
        raise InvalidState(f"Only failed or cancelled runs can be retried; this one is {run.state}.")
    run = run_transition(run.pk, RunState.QUEUED, cancel_requested=False, error="", finished_at=None)
    _enqueue_on_commit(run.pk)
    return run


@transaction.atomic
def run_clone(*, run: Run) -> Run:
    """A new run with the same record: same dataset, detectors, settings and pinned weights."""
    source = run.experiment
    pinned = {
        name: weights
        for name, weights in (run.environment.get("weights") or {}).items()
        if str(weights).startswith("checkpoint:")
    }
    experiment = Experiment.objects.create(
        owner=source.owner,
        dataset=source.dataset,
        name=f"{source.name} (re-run of run {run.pk})",
        detectors=source.detectors,
        align=source.align,
        threshold=source.threshold,
        input_size=source.input_size,
        seed=source.seed,
        baseline_detector=source.baseline_detector,
        detector_weights={**source.detector_weights, **pinned},
    )
    return run_start(experiment=experiment, cloned_from=run)


# --------------------------------------------------------------------------- training
TRAINING_LOSSES = ("bce-dice", "triplet")


@transaction.atomic
def training_start(
    *,
    owner,
    detector: str,
    dataset: Dataset,
    epochs: int = 10,
    loss: str = "bce-dice",
    size: int = 256,
    seed: int = 0,
    batch_size: int = 8,
    lr: float = 1e-3,
    patience: int = 3,
    enqueue: bool = True,
) -> TrainingJob:
    try:
        entry = catalogue_entry(detector)
    except KeyError as exc:
        raise ServiceError(str(exc.args[0]), field="detector") from None
    if not entry.learned:
        raise ServiceError(f"{detector} is not a learned detector; nothing to train.", field="detector")
    if dataset.owner_id != owner.pk and not owner.is_staff:
        raise ServiceError("Dataset not found.", field="dataset", status=404)
    if loss not in TRAINING_LOSSES:
        raise ServiceError(f"Loss must be one of {', '.join(TRAINING_LOSSES)}.", field="loss")
    if loss == "triplet" and entry.family != "siamese":
        raise ServiceError("The triplet loss needs a Siamese detector.", field="loss")
    if not 1 <= int(epochs) <= 500:
        raise ServiceError("Epochs must be between 1 and 500.", field="epochs")
    if not 32 <= int(size) <= 1024:
        raise ServiceError("Size must be between 32 and 1024 pixels.", field="size")
    labelled = dataset.pairs.exclude(label="")
    if labelled.count() < 2:
        raise ServiceError("Training needs at least two pairs with labels in the dataset.", field="dataset")
    job = TrainingJob.objects.create(
        owner=owner, detector=detector, dataset=dataset,
        config={"epochs": int(epochs), "loss": loss, "size": int(size), "seed": int(seed),
                "batch_size": int(batch_size), "lr": float(lr), "patience": int(patience)},
        progress={"stage": "queued", "history": []},
    )  # fmt: skip
    if enqueue:  # False: the caller executes the job itself (the CLI trains in its own process)
        transaction.on_commit(lambda: _enqueue_training(job.pk))
    return job


def _enqueue_training(job_id: int) -> None:
    from experiments import outbox

    outbox.dispatch(TrainingJob, job_id)


def training_cancel(*, job) -> TrainingJob:
    if job.is_finished:
        raise InvalidState(f"The training job already {job.state}.")
    TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    if job.state == RunState.QUEUED:
        return work_transition(TrainingJob, job.pk, RunState.CANCELLED, cancel_requested=True)
    job.refresh_from_db()
    return job


def checkpoint_register(*, owner, detector: str, dataset, data: bytes, sha256: str, epochs: int,
                        val_metrics: dict, config: dict, suffix: str = ".pt", is_public: bool = False):  # fmt: skip
    """Store a checkpoint file and its row (or return the existing row for the same bytes)."""
    from experiments.models import ModelCheckpoint

    existing = ModelCheckpoint.objects.filter(sha256=sha256, owner=owner).first()
    if existing is not None:
        return existing
    key = storage.checkpoint_key(sha256[:16], f"{detector}{suffix}")
    storage.save_bytes(key, data)
    try:
        with transaction.atomic():
            return ModelCheckpoint.objects.create(
                owner=owner, detector=detector, dataset=dataset, file_key=key, sha256=sha256, epochs=epochs,
                val_metrics=val_metrics, config=config, is_public=is_public,
            )  # fmt: skip
    except BaseException:
        storage.delete_keys([key])
        raise
