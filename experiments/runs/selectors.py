"""Reads of experiments, runs and results, filtered to what the user may see."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.db import connection
from django.db.models import Count, Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from experiments.models import (
    ACTIVE_RUN_STATES,
    LEADERBOARD_RUN_STATES,
    BatchJob,
    Experiment,
    ImagePair,
    PairAlignment,
    Result,
    Run,
    RunState,
    pair_fingerprint,
)
from experiments.visibility import owned_by


def experiments_visible_to(user) -> QuerySet:
    return owned_by(Experiment.objects.select_related("dataset"), user, "owner")


def runs_visible_to(user) -> QuerySet:
    return owned_by(Run.objects.select_related("experiment", "experiment__dataset"), user, "experiment__owner")


def results_visible_to(user) -> QuerySet:
    return owned_by(Result.objects.select_related("pair", "run"), user, "run__experiment__owner")


def run_for_user(user, run_id: int) -> Run | None:
    return runs_visible_to(user).filter(pk=run_id).first()


def active_runs_of(user) -> QuerySet:
    return runs_visible_to(user).filter(state__in=ACTIVE_RUN_STATES)


def run_results(run: Run) -> QuerySet:
    return run.results.select_related("pair").order_by("detector", "pair__name")


def run_alignments(run: Run) -> dict[int, PairAlignment]:
    return {a.pair_id: a for a in run.alignments.all()}


# The one list of orderings and filters for a run's results (API query parameters, pages, exports).
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


def pair_results(run: Run, pair) -> dict[str, Result]:
    """The run's results on one pair, by detector."""
    return {r.detector: r for r in run.results.filter(pair=pair)}


def consensus_mask_keys(run: Run, pair_id: int) -> list[str]:
    """The masks a pair's consensus map is drawn from: those of the run's detectors that finished
    (its leaderboard's rows without a failure); none before the run has a leaderboard."""
    finished = [row["detector"] for row in (run.leaderboard or {}).get("detectors", []) if "failed" not in row]
    return list(run.results.filter(pair_id=pair_id, detector__in=finished).values_list("mask_key", flat=True))


def pair_alignment(run: Run, pair) -> PairAlignment | None:
    return run.alignments.filter(pair=pair).first()


def pair_ious(run: Run, *, changed_only: bool = False) -> dict[str, dict[int, float]]:
    """Per detector, each labelled pair's IoU: the inputs of paired comparisons. With `changed_only`,
    only pairs whose label has change (`inference.evaluation.has_change`), as the leaderboard compares."""
    from inference.evaluation import has_change

    ious: dict[str, dict[int, float]] = {}
    counts = ("metrics__tp", "metrics__fp", "metrics__fn", "metrics__tn")
    for detector, pair_id, iou, *confusion in run.results.exclude(iou=None).values_list(
        "detector", "pair_id", "iou", *counts
    ):
        if changed_only and not has_change(dict(zip(("tp", "fp", "fn", "tn"), confusion, strict=True))):
            continue
        ious.setdefault(detector, {})[pair_id] = iou
    return ious


def run_categories(run: Run) -> list[str]:
    return sorted(set(run.experiment.dataset.pairs.exclude(category="").values_list("category", flat=True)))


def scored_pairs(experiment) -> QuerySet:
    """The pairs a run of `experiment` scores: those of its splits, or every pair when it names none."""
    pairs = experiment.dataset.pairs.order_by("pk")
    return pairs.filter(split__in=experiment.splits) if experiment.splits else pairs


def validation_pairs(experiment) -> list:
    """The labelled pairs a run of `experiment` chooses its thresholds on (`threshold_rule` "validation"):
    the dataset's val split, else the seeded `validation_holdout` share of its train split. Never
    scored (`threshold_rules.check_threshold_rule` keeps them out of the scored splits)."""
    from experiments.models import Split, ThresholdRule

    if experiment.threshold_rule != ThresholdRule.VALIDATION:
        return []
    labelled = experiment.dataset.pairs.exclude(label="").order_by("pk")
    val = list(labelled.filter(split=Split.VAL))
    if val or not experiment.validation_holdout:
        return val
    return held_out(list(labelled.filter(split=Split.TRAIN)), experiment.validation_holdout, experiment.seed)


def held_out(pairs: list, share: float, seed: int) -> list:
    """A seeded `share` of `pairs` (at least one), in their order."""
    import numpy as np

    if not pairs:
        return []
    count = max(1, round(share * len(pairs)))
    chosen = set(np.random.default_rng(seed).permutation(len(pairs))[:count].tolist())
    return [pair for index, pair in enumerate(pairs) if index in chosen]


# --------------------------------------------------------------------------- lists of experiments and runs
LIST_STATES = tuple(RunState.values)


@dataclass(frozen=True)
class ListFilters:
    """What a list of experiments or runs is narrowed to; the same for pages and API.

    `created_before` of a plain date includes that whole day. A bad value raises `ValueError`
    with a message that says what to send instead."""

    search: str = ""
    states: tuple[str, ...] = ()
    dataset: int | None = None
    detector: str = ""
    experiment: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    @classmethod
    def from_query(cls, query) -> "ListFilters":
        states = tuple(s for value in query.getlist("state") for s in value.split(",") if s.strip())
        unknown = [s for s in states if s not in LIST_STATES]
        if unknown:
            raise ValueError(f"state {unknown[0][:40]!r} is not one of {', '.join(LIST_STATES)}.")
        return cls(
            search=query.get("search", "").strip()[:200],
            states=states,
            dataset=_whole_number(query, "dataset"),
            detector=query.get("detector", "").strip()[:100],
            experiment=_whole_number(query, "experiment"),
            created_after=_moment(query, "created_after", end_of_day=False),
            created_before=_moment(query, "created_before", end_of_day=True),
        )

    def query_items(self) -> dict:
        """The filters as query parameters (for links that keep them)."""
        items = {
            "search": self.search,
            "state": ",".join(self.states),
            "dataset": self.dataset or "",
            "detector": self.detector,
            "experiment": self.experiment or "",
        }
        return {k: v for k, v in items.items() if v}


def _whole_number(query, name: str) -> int | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    if not (value.isascii() and value.isdigit() and 0 < int(value) < 2**63):
        raise ValueError(f"{name} must be an id (a positive whole number); got {value[:40]!r}.")
    return int(value)


def _moment(query, name: str, *, end_of_day: bool) -> datetime | None:
    value = query.get(name, "").strip()
    if not value:
        return None
    try:  # a date first: Python's fromisoformat (in parse_datetime) would read a date as its midnight
        day = parse_date(value)
        moment = None if day else parse_datetime(value)
    except ValueError:
        moment = day = None
    if day is not None:
        if end_of_day and day == date.max:
            return _UTC_MAX  # the end of 9999-12-31 is past Python's range
        moment = datetime.combine(day + timedelta(days=1) if end_of_day else day, time.min)
    if moment is None:
        raise ValueError(f"{name} must be a date (2026-03-31) or an ISO 8601 date-time; got {value[:40]!r}.")
    return _in_utc(moment)


_UTC_MIN = datetime.min.replace(tzinfo=UTC)
_UTC_MAX = datetime.max.replace(tzinfo=UTC)


def _in_utc(moment: datetime) -> datetime:
    """`moment` in UTC, as the database compares it; a moment of year 1 or 9999 whose offset takes it past
    Python's range becomes that end of the range (no row lies beyond it, so the filter means the same)."""
    try:
        return (timezone.make_aware(moment) if timezone.is_naive(moment) else moment).astimezone(UTC)
    except OverflowError:
        return _UTC_MIN if moment.year == 1 else _UTC_MAX


def experiments_using(detector: str) -> QuerySet:
    """Experiments whose detector list holds `detector` exactly (an element, not a substring).

    PostgreSQL answers JSON containment (`@>`); SQLite has no JSON `contains` in Django, so there its
    own `json_each` reads the list's elements. Matching the JSON text instead would confuse
    `siamese` with `siamese-resnet50`."""
    if connection.features.supports_json_field_contains:
        return Experiment.objects.filter(detectors__contains=[detector])
    table = Experiment._meta.db_table
    return Experiment.objects.filter(
        pk__in=RawSQL(f'SELECT e.id FROM "{table}" e, json_each(e.detectors) d WHERE d.value = %s', [detector])
    )


def _not_for_batches(runs: QuerySet) -> QuerySet:
    return runs.filter(~Exists(BatchJob.objects.filter(run=OuterRef("pk"))))


def listed_experiments(user) -> QuerySet:
    """The user's experiments (staff: everyone's) without the ones behind batch jobs, each with its
    newest run's state (`last_state`) and number of runs."""
    newest = Run.objects.filter(experiment=OuterRef("pk")).order_by("-created_at", "-pk")
    batch_runs = BatchJob.objects.filter(run__experiment=OuterRef("pk"))
    return (
        experiments_visible_to(user)
        .filter(~Exists(batch_runs))
        .annotate(
            last_state=Subquery(newest.values("state")[:1]),
            last_run=Subquery(newest.values("pk")[:1]),
            run_count=Count("runs", distinct=True),
        )
    )


def listed_runs(user) -> QuerySet:
    """The user's runs (staff: everyone's), without the ones behind batch jobs."""
    return _not_for_batches(runs_visible_to(user))


def _common_filters(queryset: QuerySet, filters: ListFilters, prefix: str) -> QuerySet:
    if filters.dataset:
        queryset = queryset.filter(**{f"{prefix}dataset_id": filters.dataset})
    if filters.detector:
        queryset = queryset.filter(**{f"{prefix}pk__in": experiments_using(filters.detector).values("pk")})
    if filters.created_after:
        queryset = queryset.filter(created_at__gte=filters.created_after)
    if filters.created_before:
        queryset = queryset.filter(created_at__lt=filters.created_before)
    return queryset


def filter_experiments(experiments: QuerySet, filters: ListFilters) -> QuerySet:
    """`listed_experiments` narrowed: search in the experiment's and dataset's names; state is the newest run's."""
    experiments = _common_filters(experiments, filters, "")
    if filters.search:
        experiments = experiments.filter(Q(name__icontains=filters.search) | Q(dataset__name__icontains=filters.search))
    if filters.states:
        experiments = experiments.filter(last_state__in=filters.states)
    if filters.experiment:
        experiments = experiments.filter(pk=filters.experiment)
    return experiments


def filter_runs(runs: QuerySet, filters: ListFilters) -> QuerySet:
    """`listed_runs` narrowed: search in the experiment's and dataset's names, or a run id (`12`, `#12`)."""
    runs = _common_filters(runs, filters, "experiment__")
    if filters.search:
        match = Q(experiment__name__icontains=filters.search) | Q(experiment__dataset__name__icontains=filters.search)
        number = filters.search.removeprefix("#")
        if number.isascii() and number.isdigit() and int(number) < 2**63:
            match |= Q(pk=int(number))
        runs = runs.filter(match)
    if filters.states:
        runs = runs.filter(state__in=filters.states)
    if filters.experiment:
        runs = runs.filter(experiment_id=filters.experiment)
    return runs


def pair_fingerprints(pair_ids) -> dict[int, str]:
    """Each pair's fingerprint (what its images are), by pair id."""
    return {
        pk: pair_fingerprint(a, b)
        for pk, a, b in ImagePair.objects.filter(pk__in=list(pair_ids)).values_list("pk", "a_sha256", "b_sha256")
    }


def leaderboard_rows_of(user) -> list[tuple]:
    """The user's own finished runs with a leaderboard, newest first, on listed datasets:
    (run id, dataset id, dataset name, created_at, stored detector rows, then the experiment's
    `PROTOCOL_SETTINGS`). The stored rows only, not the whole leaderboard (categories and charts can be large)."""
    runs = (
        runs_visible_to(user)
        .filter(experiment__owner=user, state__in=LEADERBOARD_RUN_STATES, experiment__dataset__hidden=False)
        .order_by("-created_at", "-pk")
    )
    fields = ("pk", "experiment__dataset_id", "experiment__dataset__name", "created_at", "leaderboard__detectors")
    return list(runs.values_list(*fields, *(f"experiment__{name}" for name in PROTOCOL_SETTINGS)))


# The experiment's settings a run's protocol depends on (`experiments.runs.protocol.comparable`).
PROTOCOL_SETTINGS = ("splits", "threshold", "threshold_rule", "validation_holdout", "align", "scaling", "seed")
