"""The new-experiment page: pick a dataset, detectors and their weights; create and start a run."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from experiments.checkpoints import selectors as checkpoint_selectors
from experiments.datasets import selectors as dataset_selectors
from experiments.errors import ServiceError
from experiments.pages.forms import ExperimentForm
from experiments.plans.kinds import plans_for
from experiments.runs import services as run_services


def _weight_choices(user, plans) -> dict[str, list[tuple[str, str]]]:
    """Per detector, the weights a user may pick, each labelled with its provenance."""
    checkpoints = {}
    for checkpoint in checkpoint_selectors.checkpoints_visible_to(user).select_related("dataset"):
        origin = "shipped, " if checkpoint.is_public and checkpoint.owner_id is None else ""
        label = f"checkpoint {checkpoint.sha256[:12]} ({origin}{checkpoint.epochs} epochs"
        label += f" on {checkpoint.dataset.name})" if checkpoint.dataset else ")"
        checkpoints.setdefault(checkpoint.detector, []).append((checkpoint.provenance, label))
    choices = {}
    for name, plan in sorted(plans.items()):
        if plan.brought_in:
            choices[name] = [("auto", "its own (uploaded)")]
        elif plan.learned:
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
    datasets = dataset_selectors.datasets_listed_for(request.user)
    plans = plans_for(request.user)
    weight_choices = _weight_choices(request.user, plans)
    initial = {"dataset": request.GET.get("dataset")}
    if request.GET.getlist("detectors"):
        initial["detectors"] = request.GET.getlist("detectors")
    form = ExperimentForm(
        request.POST or None, datasets=datasets, weight_choices=weight_choices, entries=plans, initial=initial
    )
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.service_kwargs()
            dataset = get_object_or_404(datasets, pk=data.pop("dataset"))
            try:
                run = run_services.experiment_start(owner=request.user, dataset=dataset, **data)
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
            else:
                return redirect("experiments:run_detail", pk=run.pk)
        status = 400
    detector_rows = []
    for plan in plans.values():
        availability = plan.availability
        weights_field = form[f"weights_{plan.name}"]
        # Unavailable with "auto": the checkbox is disabled until an explicit weights choice is picked.
        auto = (weights_field.value() or "auto") == "auto"
        detector_rows.append({
            "entry": plan,
            "checked": plan.name in (form["detectors"].value() or []),
            "weights_field": weights_field,
            "available": availability.available,
            "unavailable_reason": availability.reason,
            "disabled": not availability.available and auto,
        })  # fmt: skip
    cost_data = {
        "datasets": {str(d.pk): d.pair_count for d in datasets},
        "detectors": {p.name: p.relative_cost for p in plans.values()},
        "sizes": {p.name: p.default_input_size for p in plans.values()},
    }
    return render(
        request,
        "experiments/experiment_create.html",
        {"form": form, "detector_rows": detector_rows, "cost_data": cost_data, "has_datasets": datasets.exists()},
        status=status,
    )
