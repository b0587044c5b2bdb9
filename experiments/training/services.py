"""Writes of training jobs: start (queued on commit) and cancel."""

from django.db import transaction

from experiments import outbox
from experiments.errors import InvalidState, ServiceError
from experiments.lifecycle import training_transition
from experiments.models import Dataset, RunState, TrainingJob
from experiments.runs.validation import check_input_size
from inference.catalogue import catalogue_entry

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
    size = check_input_size(size, field="size")
    labelled = dataset.pairs.exclude(label="")
    if labelled.count() < 2:
        raise ServiceError("Training needs at least two pairs with labels in the dataset.", field="dataset")
    job = TrainingJob.objects.create(
        owner=owner, detector=detector, dataset=dataset,
        config={"epochs": int(epochs), "loss": loss, "size": size, "seed": int(seed),
                "batch_size": int(batch_size), "lr": float(lr), "patience": int(patience)},
        progress={"stage": "queued", "history": []},
    )  # fmt: skip
    if enqueue:  # False: the caller executes the job itself (the CLI trains in its own process)
        transaction.on_commit(lambda: _enqueue_training(job.pk))
    return job


def _enqueue_training(job_id: int) -> None:
    outbox.dispatch(TrainingJob, job_id)


def training_cancel(*, job) -> TrainingJob:
    if job.is_finished:
        raise InvalidState(f"The training job already {job.state}.")
    TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True)
    if job.state == RunState.QUEUED:
        return training_transition(job.pk, RunState.CANCELLED, cancel_requested=True)
    job.refresh_from_db()
    return job
