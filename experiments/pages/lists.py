"""Lists of experiments and runs with search, filters and pages; one experiment's page.

Filters live in the query string (`?search=&state=&dataset=&detector=&created_after=&created_before=&page=`),
read by the same `ListFilters` as the API."""

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from experiments.datasets import selectors as dataset_selectors
from experiments.plans.kinds import detector_names
from experiments.runs import selectors as run_selectors

PAGE_SIZE = 50


def _filtered(request, queryset, narrow) -> tuple[dict, int]:
    """The page of `queryset` narrowed by the query string's filters, and the HTTP status (400 on a bad filter)."""
    try:
        filters = run_selectors.ListFilters.from_query(request.GET)
    except ValueError as exc:
        filters, error = run_selectors.ListFilters(), str(exc)
        items = queryset.none()
    else:
        error = ""
        items = narrow(queryset, filters)
    page = Paginator(items.order_by("-created_at", "-pk"), PAGE_SIZE).get_page(request.GET.get("page"))
    detectors = detector_names(request.user)
    if filters.detector and filters.detector not in detectors:
        detectors.append(filters.detector)
    context = {
        "page": page,
        "filters": filters,
        "filter_error": error,
        "filter_query": urlencode(filters.query_items()),
        "raw": {name: request.GET.get(name, "") for name in ("created_after", "created_before")},
        "states": run_selectors.LIST_STATES,
        "datasets": dataset_selectors.datasets_listed_for(request.user),
        "detectors": detectors,
    }
    return context, 400 if error else 200


@login_required
@require_GET
def experiment_list(request):
    context, status = _filtered(
        request, run_selectors.listed_experiments(request.user), run_selectors.filter_experiments
    )
    return render(request, "experiments/experiment_list.html", context, status=status)


@login_required
@require_GET
def run_list(request):
    context, status = _filtered(request, run_selectors.listed_runs(request.user), run_selectors.filter_runs)
    return render(request, "experiments/run_list.html", context, status=status)


@login_required
@require_GET
def experiment_detail(request, pk):
    """An experiment's settings and its runs (checkboxes to compare them)."""
    experiment = get_object_or_404(run_selectors.experiments_visible_to(request.user), pk=pk)
    runs = run_selectors.runs_visible_to(request.user).filter(experiment=experiment).order_by("-created_at", "-pk")
    page = Paginator(runs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "experiments/experiment_detail.html", {"experiment": experiment, "page": page})
