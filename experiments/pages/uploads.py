"""Bulk upload: files or a zip -> validation report (nothing saved) -> confirm -> import."""

import zipfile
from pathlib import PurePosixPath

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from experiments.datasets import archives, staging
from experiments.datasets import selectors as dataset_selectors
from experiments.errors import ServiceError
from experiments.pages.forms import BulkUploadForm


def uploaded_archive(request) -> bytes:
    """The upload as one zip: a zip as it came (any supported layout), or loose files packed by name."""
    items = request.FILES.getlist("files")
    total = sum(f.size for f in items)
    if total > archives.max_total_bytes():
        raise ServiceError(f"The upload is {total // 2**20} MB; at most {archives.max_total_bytes() // 2**20} MB.")
    zips = [f for f in items if f.name.lower().endswith(".zip")]
    if zips:
        if len(items) > 1:
            raise ServiceError("Upload a zip on its own, not together with other files.", field="files")
        if not zipfile.is_zipfile(zips[0]):
            raise ServiceError(f"{zips[0].name} is not a readable zip archive.", field="files")
        zips[0].seek(0)
        return zips[0].read()
    files = {}
    for item in items:
        name = PurePosixPath(item.name.replace("\\", "/")).name
        if name in files:
            raise ServiceError(f"Two files are named {name!r}; file names must be unique.", field="files")
        files[name] = item.read()
    if not files:
        raise ServiceError("Choose files or a zip to upload.", field="files")
    return staging.pack(files)


@login_required
@require_POST
def dataset_upload(request, pk):
    dataset = get_object_or_404(dataset_selectors.datasets_visible_to(request.user), pk=pk)
    form = BulkUploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            archive = uploaded_archive(request)
            token, _ = staging.stage(request, dataset, archive, form.cleaned_data["category"])
        except ServiceError as exc:
            form.add_error("files" if exc.field == "files" else None, exc.message)
        else:
            return redirect("experiments:dataset_import", pk=dataset.pk, token=token)
    return render(request, "experiments/upload_errors.html", {"dataset": dataset, "bulk_form": form}, status=400)


@login_required
@require_GET
def dataset_import(request, pk, token):
    """The validation report of a staged upload; nothing is in the dataset yet.

    With `?progress=1` the import's progress as JSON, polled by the page's progress bar."""
    dataset = get_object_or_404(dataset_selectors.datasets_visible_to(request.user), pk=pk)
    if request.GET.get("progress"):
        return JsonResponse(staging.progress_of(request.user.pk, token))
    entry = staging.pending_for(request, dataset, token)
    if entry is None:
        messages.error(request, "That upload is gone (imported, discarded or expired); upload the files again.")
        return redirect("experiments:dataset_detail", pk=dataset.pk)
    report = entry["report"]
    return render(
        request,
        "experiments/dataset_import.html",
        {
            "dataset": dataset,
            "token": token,
            "report": report,
            "pair_count": report.get("pair_count", len(report["pairs"])),
            "can_import": report["ok"],
        },
    )


@login_required
@require_POST
def dataset_import_confirm(request, pk, token):
    dataset = get_object_or_404(dataset_selectors.datasets_visible_to(request.user), pk=pk)
    entry = staging.pending_for(request, dataset, token)
    if entry is None:
        messages.error(request, "That upload is gone; upload the files again.")
        return redirect("experiments:dataset_detail", pk=dataset.pk)
    if request.POST.get("action") == "discard":
        staging.discard(request, token)
        messages.info(request, "Upload discarded; nothing was imported.")
        return redirect("experiments:dataset_detail", pk=dataset.pk)
    try:
        report = staging.import_staged(request, dataset, token, entry["category"])
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("experiments:dataset_import", pk=dataset.pk, token=token)
    staging.discard(request, token)
    messages.success(request, f"Imported {report.imported} pairs.")
    return redirect("experiments:dataset_detail", pk=dataset.pk)
