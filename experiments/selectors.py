"""Reads. Every query that a user can reach is filtered to what that user may see."""

from django.db.models import Count, Q, QuerySet

from experiments.models import (
    ACTIVE_RUN_STATES,
    Dataset,
    Experiment,
    ImagePair,
    ModelCheckpoint,
    PairAlignment,
    Result,
    Run,
    TrainingJob,
)


def _owned(queryset: QuerySet, user, owner_path: str) -> QuerySet:
    if not user.is_authenticated:
        return queryset.none()
    if user.is_staff:
        return queryset
    return queryset.filter(**{owner_path: user})


def datasets_visible_to(user) -> QuerySet:
    return _owned(Dataset.objects.annotate(pair_count=Count("pairs")), user, "owner")


def datasets_listed_for(user) -> QuerySet:
    """The user's own datasets as lists show them (batch jobs' hidden datasets left out)."""
    return datasets_visible_to(user).filter(owner=user, hidden=False)


def pairs_visible_to(user) -> QuerySet:
    return _owned(ImagePair.objects.select_related("dataset"), user, "dataset__owner")


def experiments_visible_to(user) -> QuerySet:
    return _owned(Experiment.objects.select_related("dataset"), user, "owner")


def runs_visible_to(user) -> QuerySet:
    return _owned(Run.objects.select_related("experiment", "experiment__dataset"), user, "experiment__owner")


def results_visible_to(user) -> QuerySet:
    return _owned(Result.objects.select_related("pair", "run"), user, "run__experiment__owner")


def checkpoints_visible_to(user) -> QuerySet:
    if not user.is_authenticated:
        return ModelCheckpoint.objects.none()
    if user.is_staff:
        return ModelCheckpoint.objects.all()
    return ModelCheckpoint.objects.filter(Q(owner=user) | Q(is_public=True))


def training_jobs_visible_to(user) -> QuerySet:
    return _owned(TrainingJob.objects.select_related("dataset", "checkpoint"), user, "owner")


def run_for_user(user, run_id: int) -> Run | None:
    return runs_visible_to(user).filter(pk=run_id).first()


def active_runs_of(user) -> QuerySet:
    return runs_visible_to(user).filter(state__in=ACTIVE_RUN_STATES)


def newest_checkpoint(user, detector: str) -> ModelCheckpoint | None:
    """The weights `auto` picks for `user`: their own newest checkpoint, else a public one."""
    own = ModelCheckpoint.objects.filter(detector=detector, owner=user).first() if user else None
    return own or ModelCheckpoint.objects.filter(detector=detector, is_public=True).first()


def run_results(run: Run) -> QuerySet:
    return run.results.select_related("pair").order_by("detector", "pair__name")


def run_alignments(run: Run) -> dict[int, PairAlignment]:
    return {a.pair_id: a for a in run.alignments.all()}


def media_key_visible_to(user, key: str) -> bool:
    """Whether `user` may read the media file at `key` (see `experiments.storage` for the layout)."""
    if not user.is_authenticated:
        return False
    parts = key.split("/")
    if len(parts) < 3 or ".." in parts:
        return False
    kind, ref = parts[0], parts[1]
    if kind == "datasets" and ref.isdigit():
        return datasets_visible_to(user).filter(pk=int(ref)).exists()
    if kind == "runs" and ref.isdigit():
        return runs_visible_to(user).filter(pk=int(ref)).exists()
    if kind == "results":
        return results_visible_to(user).filter(Q(heatmap_key=key) | Q(mask_key=key) | Q(error_map_key=key)).exists()
    if kind == "checkpoints":
        return checkpoints_visible_to(user).filter(file_key=key).exists()
    return False


RESULT_ORDERINGS = {"iou", "-iou", "f1", "-f1", "latency_ms", "-latency_ms", "pair__name", "-pair__name", "detector"}
FILTERABLE_METRICS = {"iou", "f1", "latency_ms", "peak_memory_mb"}


def run_results_filtered(run: Run, *, detector: str | None = None, category: str | None = None,
                         metric_ranges: dict | None = None, ordering: str | None = None) -> QuerySet:  # fmt: skip
    """A run's results, filtered by detector, category and metric ranges `{name: (low, high)}`."""
    results = run.results.select_related("pair")
    if detector:
        results = results.filter(detector=detector)
    if category:
        results = results.filter(pair__category=category)
    for name, (low, high) in (metric_ranges or {}).items():
        if name not in FILTERABLE_METRICS:
            raise ValueError(f"cannot filter on {name!r}; use one of {sorted(FILTERABLE_METRICS)}")
        if low is not None:
            results = results.filter(**{f"{name}__gte": low})
        if high is not None:
            results = results.filter(**{f"{name}__lte": high})
    if ordering:
        if ordering not in RESULT_ORDERINGS:
            raise ValueError(f"cannot order by {ordering!r}; use one of {sorted(RESULT_ORDERINGS)}")
        results = results.order_by(ordering, "pk")
    return results
