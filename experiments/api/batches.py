"""Batch jobs for integrations: many pairs through chosen detectors in one request, then a zip."""

from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from experiments import storage
from experiments.api import serializers as s
from experiments.api.base import PAGE_PARAMETERS, ApiView, Cursor, ZipRenderer, paged, read_upload
from experiments.api.errors import MaybeReportErrorSerializer, error_responses
from experiments.batches import services as batches
from experiments.batches.selectors import batches_visible_to, own_batches
from experiments.models import BatchJob


def batch_record(request, job: BatchJob) -> dict:
    urls = {"self": s.page_url(request, "batch-detail", pk=job.pk)}
    if job.run_id:
        urls["run"] = s.page_url(request, "run-detail", pk=job.run_id)
        urls["archive"] = s.page_url(request, "batch-archive", pk=job.pk)
    return {
        "id": job.pk,
        **batches.batch_state(job),
        "detectors": job.detectors,
        "run": job.run_id,
        "idempotency_key": job.idempotency_key,
        "created_at": job.created_at,
        "urls": urls,
    }


def visible_batch(request, pk) -> BatchJob:
    return get_object_or_404(batches_visible_to(request.user), pk=pk)


class BatchListView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True
    throttle_scope = "uploads"

    @extend_schema(
        tags=["batches"],
        summary="Submit many pairs for detection",
        description=(
            "Multipart: repeated `image_a` and `image_b` files (matched by file name: `x_A.png` with `x_B.png`, or "
            "`x.png` with `x.png`), optional `label` files, or one `archive` zip in the LEVIR-CD layout; repeated "
            "`detectors`. Send an `Idempotency-Key` header to retry safely: the same key and payload give the same "
            "job (200), another payload with that key is refused (422), and 409 means the first request is still "
            "creating the job."
        ),
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
        request={"multipart/form-data": s.BatchInput},
        responses={
            202: s.BatchOutput,
            200: OpenApiResponse(s.BatchOutput, description="idempotent replay: the job made earlier"),
            422: OpenApiResponse(
                MaybeReportErrorSerializer, description="the files have problems, or the key was reused"
            ),
            **error_responses(400, 403, 409, 413, 415),
        },
    )
    def post(self, request):
        data = self.valid(s.BatchInput).validated_data
        if data.get("archive"):
            files = batches.read_archive(read_upload(data["archive"], "archive"))
        else:
            uploads = {
                role: [(f.name, read_upload(f, f"image_{role}" if role != "label" else "label")) for f in data[field]]
                for role, field in (("a", "image_a"), ("b", "image_b"), ("label", "label"))
            }
            files = batches.files_from_uploads(uploads)
        job, created = batches.batch_create(
            owner=request.user,
            files=files,
            detectors=data["detectors"],
            idempotency_key=request.headers.get("Idempotency-Key", ""),
            threshold=data["threshold"],
            align=data["align"],
            scaling=data["scaling"],
        )
        job = visible_batch(request, job.pk)
        headers = {"Location": s.page_url(request, "batch-detail", pk=job.pk)}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return Response(s.BatchOutput(batch_record(request, job)).data, status=202 if created else 200, headers=headers)

    @extend_schema(
        tags=["batches"],
        operation_id="batches_list",
        summary="Your batch jobs",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.BatchOutput), **error_responses(404)},
    )
    def get(self, request):
        jobs = own_batches(request.user)
        paginator = Cursor("-created_at")
        page = paginator.paginate_queryset(jobs, request, view=self)
        return paginator.get_paginated_response([s.BatchOutput(batch_record(request, job)).data for job in page])


class BatchDetailView(ApiView):
    @extend_schema(
        tags=["batches"], summary="A batch job's state", responses={200: s.BatchOutput, **error_responses(404)}
    )
    def get(self, request, pk):
        return Response(s.BatchOutput(batch_record(request, visible_batch(request, pk))).data)


class BatchArchiveView(ApiView):
    renderer_classes = [JSONRenderer, ZipRenderer]

    @extend_schema(
        tags=["batches"],
        summary="The finished batch's zip",
        description=(
            "`masks/<detector>/<pair>.png`, `heatmaps/...`, `error-maps/...` (labelled pairs), `metrics.csv` (one "
            "row per pair and detector) and `leaderboard.csv`. Built on first request; 409 until the run succeeded (or ended partial)."
        ),
        responses={(200, "application/zip"): OpenApiTypes.BINARY, **error_responses(404, 409)},
    )
    def get(self, request, pk):
        job = visible_batch(request, pk)
        key = batches.batch_archive(job)
        response = HttpResponse(storage.read_bytes(key), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{batches.archive_name(job)}"'
        return response
