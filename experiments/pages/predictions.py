"""The dataset page's "Predictions" card: upload maps made elsewhere (scored as `external:<name>`), delete them."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from experiments.datasets import selectors as dataset_selectors
from experiments.errors import ServiceError
from experiments.models import PredictionSet
from experiments.predictions import selectors, services


class PredictionsForm(forms.Form):
    prefix = "predictions"  # the dataset page has another form with a `name` field
    name = forms.CharField(max_length=90, help_text="the detector will be external:<name>")
    kind = forms.ChoiceField(
        choices=PredictionSet.Kind.choices,
        help_text="mask: nonzero = changed · probability: 8-bit PNG /255, 16-bit PNG /65535 or float32 .npy in [0, 1]",
    )
    archive = forms.FileField(
        label="Zip of maps",
        help_text="one file per pair, named like it: <pair name>.png or .npy (or <split>/<pair name>.<ext> "
        "when the name is in several splits), at B's size",
    )


def _dataset(request, pk):
    return get_object_or_404(dataset_selectors.datasets_visible_to(request.user).filter(hidden=False), pk=pk)


def _back(dataset):
    return redirect(reverse("experiments:dataset_detail", args=[dataset.pk]) + "#predictions")


@login_required
@require_POST
def prediction_upload(request, pk):
    dataset = _dataset(request, pk)
    form = PredictionsForm(request.POST, request.FILES)
    if not form.is_valid():
        messages.error(request, "Predictions not uploaded: " + " ".join(
            f"{field}: {' '.join(errors)}" for field, errors in form.errors.items()))  # fmt: skip
        return _back(dataset)
    data = form.cleaned_data
    try:
        predictions = services.prediction_set_upload(
            owner=request.user, dataset=dataset, name=data["name"], kind=data["kind"], archive=data["archive"].read()
        )
    except ServiceError as exc:
        messages.error(request, f"Predictions not uploaded: {exc.message}")
    else:
        messages.success(
            request, f"Uploaded {predictions.detector_name}: choose it in a new experiment on this dataset."
        )
    return _back(dataset)


@login_required
@require_http_methods(["GET", "POST"])
def prediction_delete(request, pk, set_pk):
    """GET: the confirmation page; POST: delete the set and its maps."""
    dataset = _dataset(request, pk)
    sets = selectors.prediction_sets_visible_to(request.user).filter(dataset=dataset)
    predictions = get_object_or_404(sets.annotate(pair_count=Count("predictions")), pk=set_pk)
    if request.method == "GET":
        return render(
            request, "experiments/prediction_confirm_delete.html", {"dataset": dataset, "predictions": predictions}
        )
    try:
        services.prediction_set_delete(prediction_set=predictions)
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Deleted {predictions.detector_name} and its maps.")
    return _back(dataset)


def prediction_card(request, dataset) -> dict:
    """The card's context on the dataset page."""
    sets = (
        selectors.prediction_sets_visible_to(request.user)
        .filter(dataset=dataset)
        .annotate(pair_count=Count("predictions"))
    )
    return {"prediction_sets": sets.order_by("name"), "predictions_form": PredictionsForm()}
