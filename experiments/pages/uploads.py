"""Bulk upload: files or a zip -> validation report (nothing saved) -> confirm -> import."""

import zipfile
from pathlib import PurePosixPath

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from experiments.datasets import ingest
from experiments.datasets import selectors as dataset_selectors
from experiments.datasets import staging as uploads
from experiments.errors import ServiceError
from experiments.pages.forms import BulkUploadForm


def uploaded_files(request) -> dict[str, bytes]:
    """{path: bytes} from the request: one zip is unpacked (LEVIR-CD layout), loose files by name."""
    items = request.FILES.getlist("files")
    total = sum(f.size for f in items)
    if total > ingest.max_archive_bytes():
        raise ServiceError(f"The upload is {total // 2**20} MB; at most {ingest.max_archive_bytes() // 2**20} MB.")
    zips = [f for f in items if f.name.lower().endswith(".zip")]
    if zips:
        if len(items) > 1:
            raise ServiceError("Upload a zip on its own, not together with other files.", field="files")
        if not zipfile.is_zipfile(zips[0]):
            raise ServiceError(f"{zips[0].name} is not a readable zip archive.", field="files")
        zips[0].seek(0)
        return ingest.read_zip(zips[0])
    files = {}
    for item in items:
        name = PurePosixPath(item.name.replace("\\", "/")).name
        if name in files:
            raise ServiceError(f"Two files are named {name!r}; file names must be unique.", field="files")
        files[name] = item.read()
    return files


@login_required
@require_POST
def dataset_upload(request, pk):
    dataset = get_object_or_404(dataset_selectors.datasets_visible_to(request.user), pk=pk)
    form = BulkUploadForm(request.POST, request.FILES)
    if form.is_valid():
        try:
            files = uploaded_files(request)
            token, _ = uploads.stage(request, dataset, files, form.cleaned_data["category"])
        except ServiceError as exc:
            form.add_error("files" if exc.field == "files" else None, exc.message)
        else:
            return redirect("experiments:dataset_import", pk=dataset.pk, token=token)
    return render(request, "experiments/upload_errors.html", {"dataset": dataset, "bulk_form": form}, status=400)


@login_required
@require_GET
def dataset_import(request, pk, token):
    """The validation report of a staged upload; nothing is in the dataset yet."""
    dataset = get_object_or_404(dataset_selectors.datasets_visible_to(request.user), pk=pk)
    entry = uploads.pending_for(request, dataset, token)
    if entry is None:
        messages.error(request, "That upload is gone (imported, discarded or expired); upload the files again.")
        return redirect("experiments:dataset_detail", pk=dataset.pk)
    report = entry["report"]
    taken = set(dataset.pairs.filter(name__in=[p["name"] for p in report["pairs"]]).values_list("name", flat=True))
    return render(
        request,
        "experiments/dataset_import.html",
        {
            "dataset": dataset,
            "token": token,
            "report": report,
            "taken": sorted(taken),
            "can_import": report["ok"] and not taken,
        },
    )


@login_required
@require_POST
def dataset_import_confirm(request, pk, token):
    dataset = get_object_or_404(dataset_selectors.datasets_visible_to(request.user), pk=pk)
    entry = uploads.pending_for(request, dataset, token)
    if entry is None:
        messages.error(request, "That upload is gone; upload the files again.")
        return redirect("experiments:dataset_detail", pk=dataset.pk)
    if request.POST.get("action") == "discard":
        uploads.discard(request, token)
        messages.info(request, "Upload discarded; nothing was imported.")
        return redirect("experiments:dataset_detail", pk=dataset.pk)
    try:
        report = uploads.recheck(request, token, entry["category"])
        pairs = ingest.import_checked(dataset=dataset, report=report)
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("experiments:dataset_import", pk=dataset.pk, token=token)
    uploads.discard(request, token)
    messages.success(request, f"Imported {len(pairs)} pairs.")
    return redirect("experiments:dataset_detail", pk=dataset.pk)
