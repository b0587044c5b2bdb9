"""Training a learned detector on one of your datasets, with live loss and validation F1 curves."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from experiments.datasets import selectors as dataset_selectors
from experiments.errors import ServiceError
from experiments.pages.forms import TrainingForm
from experiments.training import selectors as training_selectors
from experiments.training import services as training_services


@login_required
@require_http_methods(["GET", "POST"])
def training_list(request):
    datasets = dataset_selectors.datasets_listed_for(request.user)
    form = TrainingForm(request.POST or None, datasets=datasets, initial={"dataset": request.GET.get("dataset")})
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = dict(form.cleaned_data)
            dataset = get_object_or_404(datasets, pk=data.pop("dataset"))
            try:
                job = training_services.training_start(owner=request.user, dataset=dataset, **data)
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                return redirect("experiments:training_detail", pk=job.pk)
        status = 400
    jobs = training_selectors.training_jobs_visible_to(request.user).filter(owner=request.user)
    return render(request, "experiments/training_list.html",
                  {"form": form, "jobs": jobs, "plans": training_plans()}, status=status)  # fmt: skip


def training_plans() -> list[dict]:
    """Per learned detector: what training starts from, and a rough CPU time per epoch of 100 pairs."""
    from inference import catalogue

    return [
        {
            "detector": name,
            "start": catalogue.training_start_point(name),
            "seconds_per_100_pairs": catalogue.estimated_training_seconds(name, pairs=100, epochs=1),
        }
        for name in catalogue.catalogue_names()
        if catalogue.catalogue_entry(name).learned
    ]


def _job(request, pk):
    return get_object_or_404(training_selectors.training_jobs_visible_to(request.user), pk=pk)


@login_required
@require_GET
def training_detail(request, pk):
    job = _job(request, pk)
    return render(
        request, "experiments/training_detail.html", {"job": job, "history": (job.progress or {}).get("history", [])}
    )


@login_required
@require_GET
def training_status(request, pk):
    """Polling fallback of the training page."""
    from experiments.live.progress import training_snapshot

    return JsonResponse(training_snapshot(_job(request, pk)))


@login_required
@require_POST
def training_cancel(request, pk):
    job = _job(request, pk)
    try:
        training_services.training_cancel(job=job)
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("experiments:training_detail", pk=job.pk)
