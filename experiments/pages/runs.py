"""A run's page: live progress, the results section, actions (cancel, retry, clone) and exports."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from experiments.errors import ServiceError
from experiments.live.progress import run_snapshot
from experiments.runs import charts, leaderboard
from experiments.runs import selectors as run_selectors
from experiments.runs import services as run_services


def run_results_context(request, run) -> dict:
    """What the results section of a finished run shows; state comes from the query string."""
    if not run.is_finished or not run.leaderboard:
        return {"run": run, "has_results": False, "alignment_count": run.alignments.count()}
    detectors = run.experiment.detectors
    state = leaderboard.LeaderboardState.from_query(request.GET, detectors, run.experiment.baseline_detector)
    return {
        "run": run,
        "has_results": True,
        "state": state,
        "table": leaderboard.leaderboard_table(run, state),
        "categories": leaderboard.category_table(run),
        "charts": charts.chart_data(run),
        "agreement": run.leaderboard.get("agreement", []),
        "detectors": detectors,
        "query": state.query(),
        "alignment_count": run.alignments.count(),
    }


@login_required
def run_detail(request, pk):
    run = get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)
    return render(request, "experiments/run_detail.html", run_results_context(request, run))


@login_required
@require_GET
def run_results(request, pk):
    """The results section alone: the live page fetches it when the run finishes."""
    run = get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)
    return render(request, "experiments/_run_results.html", run_results_context(request, run))


def _run_action(request, pk, action):
    run = get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)
    try:
        run = action(run=run)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(request.META.get("HTTP_REFERER") or f"/runs/{pk}/", status=303)
    return redirect("experiments:run_detail", pk=run.pk)


@login_required
@require_POST
def run_cancel(request, pk):
    return _run_action(request, pk, run_services.run_cancel)


@login_required
@require_POST
def run_retry(request, pk):
    return _run_action(request, pk, run_services.run_retry)


@login_required
@require_POST
def run_clone(request, pk):
    return _run_action(request, pk, run_services.run_clone)


@login_required
@require_GET
def run_export(request, pk, fmt):
    """The leaderboard as shown (sorted, deltas to the chosen baseline) as CSV, or the full record as JSON."""
    run = get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)
    if fmt not in ("csv", "json"):
        raise Http404("Export as .csv or .json.")
    if not run.leaderboard:
        raise Http404("This run has no leaderboard yet.")
    filename = f"run-{run.pk}-leaderboard.{fmt}"
    state = leaderboard.LeaderboardState.from_query(
        request.GET, run.experiment.detectors, run.experiment.baseline_detector
    )
    if fmt == "json":
        body = json.dumps(leaderboard.leaderboard_json(run, state), indent=2)
        response = HttpResponse(body, content_type="application/json")
    else:
        response = HttpResponse(leaderboard.leaderboard_csv(run, state), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_GET
def run_status(request, pk):
    """Polling fallback for the live run page when the WebSocket is unavailable."""
    run = get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)
    return JsonResponse(run_snapshot(run))
