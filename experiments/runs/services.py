"""Writes of experiments and runs: create-and-start, cancel, retry, clone, delete.

Runs are queued through the outbox after their transaction commits, so a worker never sees a run
that the database does not have yet, and a broker outage leaves the run pending, not lost.
"""

from django.db import transaction

from experiments import outbox, storage
from experiments.errors import InvalidState, ServiceError
from experiments.lifecycle import run_transition, work_cancel
from experiments.models import RETRYABLE_RUN_STATES, Dataset, Experiment, Run, RunState
from experiments.runs import result_files
from experiments.runs.selectors import scored_pairs
from experiments.runs.threshold_rules import check_threshold_rule
from experiments.runs.validation import (
    check_available,
    check_detectors,
    check_optional_input_size,
    check_scaling,
    check_splits,
    check_threshold,
    check_webhook,
    check_weight_choices,
)


def experiment_create(
    *,
    owner,
    dataset: Dataset,
    name: str,
    detectors,
    align: bool = False,
    threshold: float = 0.5,
    threshold_rule: str = "fixed",
    validation_holdout: float | None = None,
    input_size: int | None = None,
    scaling: str = "auto",
    splits: list[str] | None = None,
    seed: int = 0,
    baseline_detector: str = "",
    detector_weights=None,
    webhook_url: str = "",
) -> Experiment:
    if dataset.owner_id != owner.pk and not owner.is_staff:
        raise ServiceError("Dataset not found.", field="dataset", status=404)
    webhook_url = check_webhook(webhook_url)  # a DNS lookup: callers make it before their transaction
    names = check_detectors(detectors, owner=owner, dataset=dataset)
    weights = check_weight_choices(detector_weights, names)
    check_available(owner, names, weights)
    threshold = check_threshold(threshold)
    input_size = check_optional_input_size(input_size)
    scaling = check_scaling(scaling)
    splits = check_splits(splits, dataset)
    threshold_rule, validation_holdout = check_threshold_rule(
        threshold_rule, validation_holdout, dataset=dataset, splits=splits
    )
    if baseline_detector and baseline_detector not in names:
        raise ServiceError("The baseline must be one of the chosen detectors.", field="baseline_detector")
    return Experiment.objects.create(
        owner=owner,
        dataset=dataset,
        name=name.strip() or f"{dataset.name}: {', '.join(names)}",
        detectors=names,
        align=bool(align),
        threshold=threshold,
        threshold_rule=threshold_rule,
        validation_holdout=validation_holdout,
        input_size=input_size,
        scaling=scaling,
        splits=splits,
        seed=int(seed),
        baseline_detector=baseline_detector,  # blank: the best classical detector, chosen when a run ends
        detector_weights=weights,
        webhook_url=webhook_url,
    )


def experiment_start(*, owner, dataset: Dataset, **settings) -> Run:
    """Create an experiment and start its first run, in one transaction: both or neither (the
    webhook URL's DNS lookup comes before it)."""
    settings["webhook_url"] = check_webhook(settings.get("webhook_url"))
    with transaction.atomic():
        experiment = experiment_create(owner=owner, dataset=dataset, **settings)
        return run_start(experiment=experiment)


def experiment_delete(*, experiment: Experiment) -> None:
    if experiment.runs.filter(state__in=[RunState.QUEUED, RunState.RUNNING]).exists():
        raise InvalidState("Cancel the experiment's active runs before deleting it.")
    run_ids = list(experiment.runs.values_list("pk", flat=True))
    with transaction.atomic():
        folders = result_files.folders_of(run_ids)
        experiment.delete()
        transaction.on_commit(lambda: _free_files(run_ids, folders), robust=True)


def run_delete(*, run: Run) -> None:
    """Delete one finished run, its results and its files; its experiment stays."""
    if not run.is_finished:
        raise InvalidState(f"The run is {run.state}; cancel it before deleting it.")
    run_id = run.pk
    with transaction.atomic():
        folders = result_files.folders_of([run_id])
        run.delete()
        transaction.on_commit(lambda: _free_files([run_id], folders), robust=True)


def _free_files(run_ids: list[int], folders: list[str]) -> None:
    for run_id in run_ids:
        storage.delete_prefix(storage.run_key(run_id))
    result_files.release(folders)


def new_attempt() -> str:
    """A token for one start or retry of a run; its tasks carry it (see `engine.is_stale`)."""
    import uuid

    return uuid.uuid4().hex


def _enqueue_on_commit(run_id: int) -> None:
    transaction.on_commit(lambda: outbox.dispatch(Run, run_id))


@transaction.atomic
def run_start(*, experiment: Experiment, cloned_from: Run | None = None) -> Run:
    pair_count = scored_pairs(experiment).count()
    if pair_count == 0:
        if experiment.splits:
            raise ServiceError(
                f"The dataset has no pairs in split(s) {', '.join(experiment.splits)}; choose other splits.",
                field="splits",
            )
        raise ServiceError("The dataset has no image pairs yet; upload pairs before starting a run.")
    run = Run.objects.create(
        experiment=experiment,
        progress_total=pair_count * len(experiment.detectors),
        progress={"stage": "queued", "detectors": {}, "attempt": new_attempt()},
        cloned_from=cloned_from,
    )
    _enqueue_on_commit(run.pk)
    return run


def run_cancel(*, run: Run) -> Run:
    return work_cancel(run)


@transaction.atomic
def run_retry(*, run: Run) -> Run:
    """Queue a partial, failed or cancelled run again; results already stored are kept and skipped, so
    in a partial run only the detectors that failed compute anything (their failure marks are cleared)."""
    if run.state not in RETRYABLE_RUN_STATES:
        raise InvalidState(f"Only partial, failed or cancelled runs can be retried; this one is {run.state}.")
    progress = dict(run.progress or {})
    progress["attempt"] = new_attempt()  # tasks still queued for the earlier attempt find it stale
    progress["detectors"] = {
        name: {key: value for key, value in entry.items() if key != "failed"} if isinstance(entry, dict) else entry
        for name, entry in (progress.get("detectors") or {}).items()
    }
    run = run_transition(run.pk, RunState.QUEUED, cancel_requested=False, error="", finished_at=None, progress=progress)
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
        threshold_rule=source.threshold_rule,
        validation_holdout=source.validation_holdout,
        input_size=source.input_size,
        scaling=source.scaling,
        splits=source.splits,
        seed=source.seed,
        baseline_detector=source.baseline_detector,
        detector_weights={**source.detector_weights, **pinned},
        webhook_url=source.webhook_url,
    )
    return run_start(experiment=experiment, cloned_from=run)
