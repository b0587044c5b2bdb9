"""A run's page: live progress, the results section, actions (cancel, retry, clone) and exports."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from experiments.errors import ServiceError
from experiments.live.progress import run_snapshot
from experiments.pages.leakage import run_leakage_card
from experiments.reporting import charts, figures, leaderboard, report, rethreshold, thesis_table
from experiments.runs import selectors as run_selectors
from experiments.runs import services as run_services
from experiments.runs.protocol import protocol_of


def run_results_context(request, run) -> dict:
    """What the results section of a finished run shows; state comes from the query string."""
    if not run.is_finished or not run.leaderboard:
        return {
            "run": run,
            "has_results": False,
            "alignment_count": run.alignments.count(),
            "protocol": protocol_of(run),
        }
    detectors = run.experiment.detectors
    state = leaderboard.LeaderboardState.from_query(request.GET, detectors, leaderboard.default_baseline_of(run))
    threshold_error = ""
    try:
        run, threshold = rethreshold.run_at_threshold(run, request.GET.get("threshold"))
    except ServiceError as exc:
        threshold_error = exc.message
        run, threshold = rethreshold.run_at_threshold(run, None)
    return {
        "run": run,
        "threshold": threshold,
        "threshold_error": threshold_error,
        "slider": _slider(run),
        "threshold_points": rethreshold.pooled_points(run),
        "threshold_query": "" if threshold["at_run_threshold"] else f"&threshold={threshold['threshold']}",
        "has_results": True,
        "state": state,
        "table": leaderboard.leaderboard_table(run, state),
        "thesis_rows": thesis_table.thesis_records(run, state),
        "thesis_labels": [thesis_table.THESIS_LABELS[field] for field in thesis_table.THESIS_FIELDS],
        "thesis_memory_label": (
            "the model's own: weights plus one batch-1 prediction, measured in a process of its own (peak RSS above "
            "its baseline on the CPU, peak CUDA memory allocated above the level before loading on a GPU); the "
            "worker's peak RSS is the whole process's"
        ),
        "categories": leaderboard.category_table(run),
        "charts": charts.chart_data(run),
        "agreement": run.leaderboard.get("agreement", []),
        "detectors": detectors,
        "query": state.query(),
        "alignment_count": run.alignments.count(),
        "protocol": protocol_of(run),
    }


def _slider(run) -> dict:
    """The threshold slider: grid steps of 1/256 (exact for the stored histograms) and the run's own threshold."""
    return {"step": rethreshold.SLIDER_STEP, "min": rethreshold.SLIDER_STEP, "max": 1 - rethreshold.SLIDER_STEP,
            "run_threshold": run.experiment.threshold}  # fmt: skip


def _threshold_view(request, run):
    """`(run at the asked threshold, its record)`, or a 400 response saying what to fix."""
    try:
        return rethreshold.run_at_threshold(run, request.GET.get("threshold"))
    except ServiceError as exc:
        return None, HttpResponseBadRequest(exc.message, content_type="text/plain; charset=utf-8")


@login_required
def run_detail(request, pk):
    run = get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)
    context = {**run_results_context(request, run), **run_leakage_card(run)}
    return render(request, "experiments/run_detail.html", context)


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
        request.GET, run.experiment.detectors, leaderboard.default_baseline_of(run)
    )
    run, threshold = _threshold_view(request, run)
    if run is None:
        return threshold
    if fmt == "json":
        body = json.dumps({**leaderboard.leaderboard_json(run, state), "threshold": threshold}, indent=2)
        response = HttpResponse(body, content_type="application/json")
    elif request.GET.get("view") == "thesis":
        filename = f"run-{run.pk}-thesis-table.csv"
        response = HttpResponse(thesis_table.thesis_csv(run, state), content_type="text/csv; charset=utf-8")
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


def _finished_run(request, pk):
    run = get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)
    if not run.leaderboard:
        raise Http404("This run has no leaderboard yet.")
    return run


@login_required
@require_GET
def run_threshold(request, pk):
    """The leaderboard's rows, categories and PR points at `?threshold=` (JSON for the slider)."""
    run = _finished_run(request, pk)
    state = leaderboard.LeaderboardState.from_query(
        request.GET, run.experiment.detectors, leaderboard.default_baseline_of(run)
    )
    view, threshold = _threshold_view(request, run)
    if view is None:
        return threshold
    return JsonResponse({
        "threshold": threshold,
        "columns": [{"key": c.key, "higher_is_better": c.higher_is_better, "digits": c.digits} for c in leaderboard.COLUMNS],
        "rows": leaderboard.leaderboard_records(view, state),
        "points": rethreshold.pooled_points(view),
        "categories": leaderboard.category_table(view),
        "thesis": thesis_table.thesis_records(view, state),
    })  # fmt: skip


@login_required
@require_GET
def run_report(request, pk, fmt):
    """The publication export (`report.md`, `.tex`, `.html`) at `?threshold=` (default: the run's own)."""
    run = _finished_run(request, pk)
    if fmt not in report.FORMATS:
        raise Http404("Export the report as .md, .tex or .html.")
    view, threshold = _threshold_view(request, run)
    if view is None:
        return threshold
    body, content_type = report.render(view, fmt)
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-report.{fmt}"'
    return response


@login_required
@require_GET
def run_chart(request, pk, name):
    """A chart as `<scatter|pr>.<svg|png>` at `?threshold=`."""
    run = _finished_run(request, pk)
    view, threshold = _threshold_view(request, run)
    if view is None:
        return threshold
    chart = figures.chart_file(view, name)
    if chart is None:
        raise Http404("Charts are scatter or pr, as .svg or .png.")
    body, content_type = chart
    response = HttpResponse(body, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="run-{run.pk}-{name}"'
    return response
