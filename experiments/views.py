"""Pages. Thin: read through selectors, write through services, 404 for what is not yours."""

import json
import mimetypes

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from experiments import page_queries, selectors, services, storage
from experiments.errors import ServiceError
from experiments.forms import DatasetForm, ExperimentForm, PairUploadForm
from experiments.models import ACTIVE_RUN_STATES
from inference.catalogue import BUILTIN_DETECTORS, catalogue_names


@login_required
def dashboard(request):
    own_runs = selectors.runs_visible_to(request.user).filter(experiment__owner=request.user)
    return render(
        request,
        "experiments/dashboard.html",
        {
            "datasets": selectors.datasets_listed_for(request.user),
            "experiments": selectors.experiments_visible_to(request.user).filter(owner=request.user)[:20],
            "runs": own_runs[:20],
            "active_count": own_runs.filter(state__in=ACTIVE_RUN_STATES).count(),
            "training_jobs": selectors.training_jobs_visible_to(request.user).filter(owner=request.user)[:10],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def dataset_list(request):
    form = DatasetForm(request.POST or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                dataset = services.dataset_create(owner=request.user, **form.cleaned_data)
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                return redirect("experiments:dataset_detail", pk=dataset.pk)
        status = 400
    datasets = selectors.datasets_listed_for(request.user)
    return render(request, "experiments/dataset_list.html", {"datasets": datasets, "form": form}, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_detail(request, pk):
    """The dataset's pairs (thumbnails, categories) and the upload forms; POST adds one pair."""
    from experiments.forms import BulkUploadForm

    dataset = get_object_or_404(selectors.datasets_visible_to(request.user), pk=pk)
    form = PairUploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                services.pair_create(
                    dataset=dataset,
                    name=data["name"],
                    a_bytes=data["image_a"].read(),
                    b_bytes=data["image_b"].read(),
                    label_bytes=data["label"].read() if data["label"] else None,
                    category=data["category"],
                    split=data.get("split") or "",
                )
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                messages.success(request, f"Pair {data['name']!r} added.")
                return redirect("experiments:dataset_detail", pk=dataset.pk)
        status = 400
    category = request.GET.get("category", "")
    pairs = dataset.pairs.all()
    if "category" in request.GET:
        pairs = pairs.filter(category=category)
    return render(
        request,
        "experiments/dataset_detail.html",
        {
            "dataset": dataset,
            "pairs": pairs,
            "form": form,
            "bulk_form": BulkUploadForm(),
            "categories": page_queries.dataset_categories(dataset),
            "category": category if "category" in request.GET else None,
            "runs": selectors.runs_visible_to(request.user).filter(experiment__dataset=dataset)[:10],
        },
        status=status,
    )


def _weight_choices(user) -> dict[str, list[tuple[str, str]]]:
    """Per detector, the weights a user may pick, each labelled with its provenance."""
    checkpoints = {}
    for checkpoint in selectors.checkpoints_visible_to(user).select_related("dataset"):
        origin = "shipped, " if checkpoint.is_public and checkpoint.owner_id is None else ""
        label = f"checkpoint {checkpoint.sha256[:12]} ({origin}{checkpoint.epochs} epochs"
        label += f" on {checkpoint.dataset.name})" if checkpoint.dataset else ")"
        checkpoints.setdefault(checkpoint.detector, []).append((checkpoint.provenance, label))
    choices = {}
    for name in catalogue_names():
        if BUILTIN_DETECTORS[name].learned:
            choices[name] = [
                ("auto", "auto: your newest checkpoint, else a shipped one, else ImageNet backbone"),
                ("random", "untrained (random init)"),
                *checkpoints.get(name, []),
            ]
        else:
            choices[name] = [("auto", "none (classical, no weights)")]
    return choices


@login_required
@require_http_methods(["GET", "POST"])
def experiment_create(request):
    datasets = selectors.datasets_listed_for(request.user)
    weight_choices = _weight_choices(request.user)
    initial = {"dataset": request.GET.get("dataset")}
    if request.GET.getlist("detectors"):
        initial["detectors"] = request.GET.getlist("detectors")
    form = ExperimentForm(request.POST or None, datasets=datasets, weight_choices=weight_choices, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.service_kwargs()
            dataset = get_object_or_404(datasets, pk=data.pop("dataset"))
            try:
                experiment = services.experiment_create(owner=request.user, dataset=dataset, **data)
                run = services.run_start(experiment=experiment)
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                return redirect("experiments:run_detail", pk=run.pk)
        status = 400
    detector_rows = [
        {
            "entry": entry,
            "checked": entry.name in (form["detectors"].value() or []),
            "weights_field": form[f"weights_{entry.name}"],
        }
        for entry in BUILTIN_DETECTORS.values()
    ]
    cost_data = {
        "datasets": {str(d.pk): d.pair_count for d in datasets},
        "detectors": {e.name: e.relative_cost for e in BUILTIN_DETECTORS.values()},
    }
    return render(
        request,
        "experiments/experiment_create.html",
        {"form": form, "detector_rows": detector_rows, "cost_data": cost_data, "has_datasets": datasets.exists()},
        status=status,
    )


# --------------------------------------------------------------------------- runs
def run_results_context(request, run) -> dict:
    """What the results section of a finished run shows; state comes from the query string."""
    if not run.is_finished or not run.leaderboard:
        return {"run": run, "has_results": False, "alignment_count": run.alignments.count()}
    detectors = run.experiment.detectors
    state = page_queries.LeaderboardState.from_query(request.GET, detectors, run.experiment.baseline_detector)
    return {
        "run": run,
        "has_results": True,
        "state": state,
        "table": page_queries.leaderboard_table(run, state),
        "categories": page_queries.category_table(run),
        "charts": page_queries.chart_data(run),
        "agreement": run.leaderboard.get("agreement", []),
        "detectors": detectors,
        "query": state.query(),
        "alignment_count": run.alignments.count(),
    }


@login_required
def run_detail(request, pk):
    run = get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
    return render(request, "experiments/run_detail.html", run_results_context(request, run))


@login_required
@require_GET
def run_results(request, pk):
    """The results section alone: the live page fetches it when the run finishes."""
    run = get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
    return render(request, "experiments/_run_results.html", run_results_context(request, run))


def _run_action(request, pk, action):
    run = get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
    try:
        run = action(run=run)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return HttpResponseRedirect(request.META.get("HTTP_REFERER") or f"/runs/{pk}/", status=303)
    return redirect("experiments:run_detail", pk=run.pk)


@login_required
@require_POST
def run_cancel(request, pk):
    return _run_action(request, pk, services.run_cancel)


@login_required
@require_POST
def run_retry(request, pk):
    return _run_action(request, pk, services.run_retry)


@login_required
@require_POST
def run_clone(request, pk):
    return _run_action(request, pk, services.run_clone)


@login_required
@require_GET
def run_export(request, pk, fmt):
    """The leaderboard as shown (sorted, deltas to the chosen baseline) as CSV, or the full record as JSON."""
    import csv

    run = get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
    if fmt not in ("csv", "json"):
        raise Http404("Export as .csv or .json.")
    if not run.leaderboard:
        raise Http404("This run has no leaderboard yet.")
    filename = f"run-{run.pk}-leaderboard.{fmt}"
    if fmt == "json":
        payload = {
            "run": run.pk,
            "experiment": run.experiment.name,
            "dataset": run.experiment.dataset.name,
            "settings": run.experiment.settings_record(),
            "environment": run.environment,
            "leaderboard": run.leaderboard,
        }
        response = HttpResponse(json.dumps(payload, indent=2), content_type="application/json")
    else:
        detectors = run.experiment.detectors
        state = page_queries.LeaderboardState.from_query(request.GET, detectors, run.experiment.baseline_detector)
        response = HttpResponse(content_type="text/csv; charset=utf-8")
        csv.writer(response).writerows(page_queries.leaderboard_csv_rows(page_queries.leaderboard_table(run, state)))
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@login_required
@require_GET
def media(request, key):
    """Media are never public: the owner (or staff) gets the file, anyone else a 404."""
    if not selectors.media_key_visible_to(request.user, key):
        raise Http404("No such file.")
    if not storage.is_local():
        return HttpResponseRedirect(storage.presigned_url(key))
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    if settings.MEDIA_X_ACCEL_REDIRECT:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = f"/protected-media/{key}"
        return response
    try:
        handle = open(storage.local_path(key), "rb")  # noqa: SIM115 - FileResponse closes it
    except FileNotFoundError:
        raise Http404("No such file.") from None
    response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_GET
def run_status(request, pk):
    """Polling fallback for the live run page when the WebSocket is unavailable."""
    from experiments.progress import run_snapshot

    run = get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
    return JsonResponse(run_snapshot(run))


@login_required
@require_GET
def runs_status(request):
    """States of the user's recent runs and training jobs, for the dashboard's live status chips."""
    runs = selectors.runs_visible_to(request.user).filter(experiment__owner=request.user)[:50]
    jobs = selectors.training_jobs_visible_to(request.user).filter(owner=request.user)[:20]
    return JsonResponse(
        {
            "runs": [{"id": r.pk, "state": r.state, "done": r.progress_done, "total": r.progress_total} for r in runs],
            "training": [{"id": j.pk, "state": j.state, "stage": (j.progress or {}).get("stage", "")} for j in jobs],
        }
    )
