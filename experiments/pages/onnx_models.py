"""Your own models as ONNX files: upload one with its contract, see its state (validating, ready,
rejected with the reason; reload to follow), delete one after confirming."""

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from experiments.errors import ServiceError
from experiments.models import UploadedModel
from experiments.onnx_models import services as model_services
from experiments.onnx_models.selectors import models_of, models_visible_to


class ModelUploadForm(forms.Form):
    file = forms.FileField(label="ONNX file", help_text="written by torch.onnx.export (a .pt checkpoint is refused)")
    name = forms.CharField(max_length=90, help_text="becomes detector onnx:<name>; letters, digits, '.', '_', '-'")
    input_size = forms.CharField(
        max_length=8, initial="any", help_text="square input in pixels, or 'any' (fully convolutional: run at B's size)"
    )
    mean = forms.CharField(max_length=200, initial="0.485,0.456,0.406", help_text="RGB scaled to [0, 1]")
    std = forms.CharField(max_length=200, initial="0.229,0.224,0.225")
    inputs = forms.ChoiceField(choices=UploadedModel.Inputs.choices)
    output = forms.ChoiceField(choices=UploadedModel.Output.choices, help_text="1xHxW or 1x1xHxW")


@login_required
@require_http_methods(["GET", "POST"])
def model_list(request):
    form = ModelUploadForm(request.POST or None, request.FILES or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = dict(form.cleaned_data)
            upload = data.pop("file")
            try:
                model = model_services.model_upload(owner=request.user, data=upload.read(), **data)
            except ServiceError as exc:
                form.add_error(exc.field if exc.field in form.fields else None, exc.message)
                status = exc.status
            else:
                messages.success(request, f"{model.detector_name} is being validated; reload to see its state.")
                return redirect("experiments:model_list")
    context = {"form": form, "models": models_of(request.user), "max_mb": model_services.max_model_bytes() // 2**20}
    return render(request, "experiments/model_list.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def model_delete(request, pk):
    model = get_object_or_404(models_visible_to(request.user), pk=pk)
    if request.method == "POST":
        model_services.model_delete(model=model)
        messages.success(request, f"{model.detector_name} and its file are deleted.")
        return redirect("experiments:model_list")
    return render(request, "experiments/model_delete.html", {"model": model})
