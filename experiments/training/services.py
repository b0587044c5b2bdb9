"""Writes of training jobs: start (queued on commit) and cancel."""

from django.db import transaction

from experiments import outbox
from experiments.errors import ServiceError
from experiments.lifecycle import work_cancel
from experiments.models import Dataset, TrainingJob
from experiments.runs.validation import check_input_size
from inference.catalogue import catalogue_entry
from inference.training_config import EPOCHS_RANGE, LOSSES, training_config


@transaction.atomic
def training_start(
    *,
    owner,
    detector: str,
    dataset: Dataset,
    enqueue: bool = True,
    **options,
) -> TrainingJob:
    """Queue training `detector` on `dataset`; `options` are `TrainingConfig` fields (defaults for the rest)."""
    try:
        config = training_config(options)
    except TypeError as exc:
        raise ServiceError(str(exc)) from None
    loss, epochs = config.loss, config.epochs
    try:
        entry = catalogue_entry(detector)
    except KeyError as exc:
        raise ServiceError(str(exc.args[0]), field="detector") from None
    if not entry.learned:
        raise ServiceError(f"{detector} is not a learned detector; nothing to train.", field="detector")
    if dataset.owner_id != owner.pk and not owner.is_staff:
        raise ServiceError("Dataset not found.", field="dataset", status=404)
    if loss not in LOSSES:
        raise ServiceError(f"Loss must be one of {', '.join(LOSSES)}.", field="loss")
    if loss == "triplet" and entry.family != "siamese":
        raise ServiceError("The triplet loss needs a Siamese detector.", field="loss")
    if not EPOCHS_RANGE[0] <= int(epochs) <= EPOCHS_RANGE[1]:
        raise ServiceError(f"Epochs must be between {EPOCHS_RANGE[0]} and {EPOCHS_RANGE[1]}.", field="epochs")
    check_input_size(config.size, field="size")
    labelled = dataset.pairs.exclude(label="")
    if labelled.count() < 2:
        raise ServiceError("Training needs at least two pairs with labels in the dataset.", field="dataset")
    job = TrainingJob.objects.create(
        owner=owner, detector=detector, dataset=dataset,
        config=config.as_dict(),
        progress={"stage": "queued", "history": []},
    )  # fmt: skip
    if enqueue:  # False: the caller executes the job itself (the CLI trains in its own process)
        transaction.on_commit(lambda: _enqueue_training(job.pk))
    return job


def _enqueue_training(job_id: int) -> None:
    outbox.dispatch(TrainingJob, job_id)


def training_cancel(*, job) -> TrainingJob:
    return work_cancel(job)
