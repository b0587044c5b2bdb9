"""Reads of experiments, runs and results, filtered to what the user may see."""

from django.db.models import QuerySet

from experiments.models import ACTIVE_RUN_STATES, Experiment, PairAlignment, Result, Run
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
