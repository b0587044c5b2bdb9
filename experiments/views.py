"""Pages. Thin: read through selectors, write through services, 404 for what is not yours."""

import mimetypes

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from experiments import selectors, services, storage
from experiments.errors import ServiceError
from experiments.forms import DatasetForm, ExperimentForm, PairUploadForm
from inference.catalogue import BUILTIN_DETECTORS


@login_required
def dashboard(request):
    return render(
        request,
        "experiments/dashboard.html",
        {
            "datasets": selectors.datasets_visible_to(request.user).filter(owner=request.user),
            "experiments": selectors.experiments_visible_to(request.user).filter(owner=request.user),
            "runs": selectors.runs_visible_to(request.user).filter(experiment__owner=request.user)[:20],
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def dataset_list(request):
    form = DatasetForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            dataset = services.dataset_create(owner=request.user, **form.cleaned_data)
        except ServiceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            return redirect("experiments:dataset_detail", pk=dataset.pk)
    datasets = selectors.datasets_visible_to(request.user)
    return render(request, "experiments/dataset_list.html", {"datasets": datasets, "form": form})


@login_required
@require_http_methods(["GET", "POST"])
def dataset_detail(request, pk):
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
    pairs = dataset.pairs.all()
    return render(
        request, "experiments/dataset_detail.html", {"dataset": dataset, "pairs": pairs, "form": form}, status=status
    )


@login_required
@require_http_methods(["GET", "POST"])
def experiment_create(request):
    datasets = selectors.datasets_visible_to(request.user).filter(owner=request.user)
    form = ExperimentForm(request.POST or None, datasets=datasets, initial={"dataset": request.GET.get("dataset")})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = dict(form.cleaned_data)
            dataset = get_object_or_404(datasets, pk=data.pop("dataset"))
            try:
                experiment = services.experiment_create(owner=request.user, dataset=dataset, **data)
                run = services.run_start(experiment=experiment)
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                return redirect("experiments:run_detail", pk=run.pk)
        status = 400
    return render(
        request,
        "experiments/experiment_create.html",
        {"form": form, "catalogue": BUILTIN_DETECTORS.values()},
        status=status,
    )


@login_required
def run_detail(request, pk):
    run = get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
    results = selectors.run_results(run) if run.is_finished else []
    return render(request, "experiments/run_detail.html", {"run": run, "results": results})


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
    from django.http import JsonResponse

    from experiments.progress import run_snapshot

    run = get_object_or_404(selectors.runs_visible_to(request.user), pk=pk)
    return JsonResponse(run_snapshot(run))


@login_required
@require_GET
def runs_status(request):
    """States of the user's recent runs, for the dashboard's live status chips."""
    from django.http import JsonResponse

    runs = selectors.runs_visible_to(request.user).filter(experiment__owner=request.user)[:50]
    return JsonResponse(
        {"runs": [{"id": r.pk, "state": r.state, "done": r.progress_done, "total": r.progress_total} for r in runs]}
    )
