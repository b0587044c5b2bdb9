"""Delete pages: GET shows what goes (rows and files), POST deletes through the domain's service.

Only the owner (and staff, as everywhere: experiments/visibility.py) reaches them; another user
gets 404, as if the object did not exist. Uploaded
models and prediction sets have their own delete pages (pages/onnx_models.py, pages/predictions.py).
"""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import ProtectedError
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from experiments import storage
from experiments.checkpoints import services as checkpoint_services
from experiments.datasets import selectors as dataset_selectors
from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.models import (
    ACTIVE_RUN_STATES,
    Experiment,
    ModelCheckpoint,
    PairAlignment,
    Result,
    TrainingJob,
)
from experiments.runs import selectors as run_selectors
from experiments.runs import services as run_services
from experiments.visibility import owned_by


def _file_count(*prefixes: str) -> int:
    return sum(len(storage.list_all_keys(prefix)) for prefix in prefixes)


def _confirm_or_delete(request, template: str, context: dict, delete, done: str, back):
    """GET: the confirmation page. POST: `delete()`, then `done` and the redirect `back()`; a refusal
    from the service (a state or dependency error) comes back on the confirmation page as a 409."""
    if request.method == "POST":
        try:
            delete()
        except ServiceError as exc:
            context["refusal"] = exc.message
            return render(request, template, context, status=exc.status)
        except ProtectedError:
            context["refusal"] = "Other objects still use it; delete them first."
            return render(request, template, context, status=409)
        messages.success(request, done)
        return back()
    return render(request, template, context)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_delete(request, pk):
    dataset = get_object_or_404(dataset_selectors.datasets_visible_to(request.user), pk=pk)
    context = {
        "dataset": dataset,
        "pair_count": dataset.pairs.count(),
        "prediction_set_count": dataset.prediction_sets.count(),
        "file_count": _file_count(storage.dataset_key(dataset.pk)),
        "experiments": list(dataset.experiments.all()[:20]),
        "experiment_count": dataset.experiments.count(),
        "training_count": TrainingJob.objects.filter(dataset=dataset).count(),
    }
    return _confirm_or_delete(
        request,
        "experiments/dataset_confirm_delete.html",
        context,
        lambda: dataset_services.dataset_delete(dataset=dataset),
        f"Dataset {dataset.name!r}, its {context['pair_count']} pairs and their files are deleted.",
        lambda: redirect("experiments:dataset_list"),
    )


@login_required
@require_http_methods(["GET", "POST"])
def experiment_delete(request, pk):
    experiment = get_object_or_404(run_selectors.experiments_visible_to(request.user), pk=pk)
    run_ids = list(experiment.runs.values_list("pk", flat=True))
    context = {
        "experiment": experiment,
        "run_count": len(run_ids),
        "active_run_count": experiment.runs.filter(state__in=ACTIVE_RUN_STATES).count(),
        "result_count": Result.objects.filter(run__experiment=experiment).count(),
        "file_count": _file_count(*(storage.run_key(run_id) for run_id in run_ids)),
    }
    return _confirm_or_delete(
        request,
        "experiments/experiment_confirm_delete.html",
        context,
        lambda: run_services.experiment_delete(experiment=experiment),
        f"Experiment {experiment.name!r} and its {len(run_ids)} run(s) are deleted.",
        lambda: redirect("experiments:experiment_list"),
    )


@login_required
@require_http_methods(["GET", "POST"])
def run_delete(request, pk):
    run = get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)
    context = {
        "run": run,
        "result_count": run.results.count(),
        "alignment_count": PairAlignment.objects.filter(run=run).count(),
        "file_count": _file_count(storage.run_key(run.pk)),
    }
    return _confirm_or_delete(
        request,
        "experiments/run_confirm_delete.html",
        context,
        lambda: run_services.run_delete(run=run),
        f"Run #{run.pk}, its {context['result_count']} results and their files are deleted.",
        lambda: redirect("experiments:experiment_detail", pk=run.experiment_id),
    )


@login_required
@require_http_methods(["GET", "POST"])
def checkpoint_delete(request, pk):
    checkpoint = get_object_or_404(owned_by(ModelCheckpoint.objects.all(), request.user, "owner"), pk=pk)
    file_shared = ModelCheckpoint.objects.filter(file_key=checkpoint.file_key).exclude(pk=checkpoint.pk).exists()
    keys = [key for key in (checkpoint.file_key, checkpoint.tensors_key) if key]  # an upload's safetensors copy too
    context = {
        "checkpoint": checkpoint,
        "file_count": 0 if file_shared else sum(storage.exists(key) for key in keys),
        "training_jobs": list(TrainingJob.objects.filter(checkpoint=checkpoint).values_list("pk", flat=True)),
        "experiment_count": sum(
            checkpoint.provenance in (weights or {}).values()
            for weights in Experiment.objects.filter(owner=checkpoint.owner_id).values_list(
                "detector_weights", flat=True
            )
        ),
    }
    return _confirm_or_delete(
        request,
        "experiments/checkpoint_confirm_delete.html",
        context,
        lambda: checkpoint_services.checkpoint_delete(checkpoint=checkpoint),
        f"Checkpoint {checkpoint.sha256[:12]} of {checkpoint.detector} and its file are deleted.",
        lambda: redirect("experiments:training_list"),
    )
