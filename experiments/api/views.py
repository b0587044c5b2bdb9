"""The REST API (`/api/v1/`): thin views that read through selectors and write through services.

Another user's objects answer 404. Errors come in one JSON shape (see `experiments.api.errors`).
Torch is never imported here, except inside the checkpoint upload view, which must read the file
to validate it (`torch.load(weights_only=True)`).
"""

import base64

from django.conf import settings
from django.contrib.auth import authenticate
from django.db.models import F, FloatField, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from experiments import exports, storage
from experiments.api import serializers as s
from experiments.api.errors import (
    ApiError,
    PayloadTooLarge,
    ReportErrorSerializer,
    error_responses,
)
from experiments.batches import services as batches
from experiments.checkpoints import selectors as checkpoint_selectors
from experiments.checkpoints import services as checkpoint_services
from experiments.datasets import ingest
from experiments.datasets import selectors as dataset_selectors
from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.live import tickets as ws_tickets
from experiments.media import media_response
from experiments.models import BatchJob, ModelCheckpoint, RunState
from experiments.runs import selectors as run_selectors
from experiments.runs import services as run_services
from experiments.training import selectors as training_selectors
from experiments.training import services as training_services
from inference.catalogue import BUILTIN_DETECTORS, catalogue_entry

DIFF_MAX_PIXELS = 1024 * 1024
MULTIPART_OVERHEAD = 256 * 1024
# Parameter counts measured once with `inference.registry.detector_info` (torch, meta device);
# a test keeps this table equal to the registry so that the web process never imports torch.
DETECTOR_PARAMS = {
    "absdiff": 0,
    "ssim": 0,
    "ensemble": 0,
    "siamese-unet": 1_350_001,
    "siamese-resnet50": 23_865_345,
    "siamese-vgg16": 14_916_353,
    "siamese-mobilenetv3": 3_036_433,
    "resnet50-compare-head": 25_606_209,
}
LEARNED_INPUT_SIZE = 256


# --------------------------------------------------------------------------- plumbing
class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data.encode() if isinstance(data, str) else data


class PassthroughRenderer(BaseRenderer):
    """Lets clients ask for the binary a view returns (`Accept: application/zip`, images)."""

    media_type = "*/*"
    format = "bin"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return data


class ZipRenderer(PassthroughRenderer):
    media_type = "application/zip"
    format = "zip"


class Cursor(CursorPagination):
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"

    def __init__(self, ordering: str):
        self.ordering = ordering


_PAGED = {}


def paged(serializer_class):
    """The schema of a cursor page of `serializer_class`."""
    name = f"Paged{serializer_class.__name__}"
    if name not in _PAGED:
        _PAGED[name] = inline_serializer(
            name,
            {
                "next": serializers.URLField(allow_null=True),
                "previous": serializers.URLField(allow_null=True),
                "results": serializer_class(many=True),
            },
        )
    return _PAGED[name]


PAGE_PARAMETERS = [
    OpenApiParameter("cursor", str, description="the opaque cursor from `next` or `previous`"),
    OpenApiParameter("page_size", int, description="results per page (at most 200)"),
]


class ApiView(APIView):
    """Base view: uploads above `MAX_UPLOAD_MB` answer 413 before they are parsed."""

    takes_uploads = False

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.takes_uploads and request.method == "POST":
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > s.max_upload_bytes() + MULTIPART_OVERHEAD:
                raise PayloadTooLarge()

    def paginate(self, queryset, serializer_class, ordering: str):
        paginator = Cursor(ordering)
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        data = serializer_class(page, many=True, context={"request": self.request}).data
        return paginator.get_paginated_response(data)

    def out(self, serializer_class, instance, status_code=200, **headers):
        data = serializer_class(instance, context={"request": self.request}).data
        return Response(data, status=status_code, headers=headers or None)

    def valid(self, serializer_class, data=None):
        serializer = serializer_class(data=self.request.data if data is None else data)
        serializer.is_valid(raise_exception=True)
        return serializer


def read_upload(upload, field: str) -> bytes:
    if upload.size > s.max_upload_bytes():
        raise PayloadTooLarge(
            f"{field} is {upload.size / 2**20:.1f} MB; files up to {settings.MAX_UPLOAD_MB} MB are accepted.",
            field=field,
        )
    return upload.read()


def int_param(name: str, description: str) -> OpenApiParameter:
    return OpenApiParameter(name, int, OpenApiParameter.PATH, description=description)


@extend_schema(exclude=True)
class NotFoundView(ApiView):
    """Unknown paths under `/api/v1/` answer in the API's error shape."""

    permission_classes = [AllowAny]

    def dispatch(self, request, *args, **kwargs):
        self.http_method_names = [*APIView.http_method_names]
        return super().dispatch(request, *args, **kwargs)

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise Http404


# --------------------------------------------------------------------------- auth
class TokenView(ApiView):
    parser_classes = [JSONParser, FormParser]
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_scope = "auth"

    @extend_schema(
        tags=["auth"],
        summary="Get your API token",
        description="Exchange a username and password for the token to send as `Authorization: Token <key>`.",
        request=s.TokenInput,
        responses={200: s.TokenOutput, **{code: error_responses(400, 413, 415)[code] for code in (400, 413, 415, 429)}},
        auth=[],
    )
    def post(self, request):
        data = self.valid(s.TokenInput).validated_data
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None or not user.is_active:
            raise ApiError("Unable to log in with these credentials.", field="password")
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


# --------------------------------------------------------------------------- detectors
def detector_record(user, entry) -> dict:
    if not entry.learned:
        weights, available = "none", True
    else:
        checkpoint = checkpoint_selectors.newest_checkpoint(user, entry.name)
        weights, available = (checkpoint.provenance, True) if checkpoint else ("untrained", False)
    return {
        **entry.as_dict(),
        "params": DETECTOR_PARAMS.get(entry.name),
        "input_size": LEARNED_INPUT_SIZE if entry.learned else None,
        "weights": weights,
        "weights_available": available,
        "sync_diff": entry.name in SYNC_DIFF_DETECTORS,
    }


SYNC_DIFF_DETECTORS = ("absdiff", "ssim")


class DetectorListView(ApiView):
    @extend_schema(
        tags=["detectors"],
        summary="List the detectors",
        description=(
            "Every detector with its family, queue and parameter count (a static table measured from the registry, "
            "so the web process never loads torch). `weights` says what a run would use for you: the newest "
            "checkpoint you can see, or `untrained` for a learned detector without one."
        ),
        responses={200: s.DetectorOutput(many=True), **error_responses()},
    )
    def get(self, request):
        records = [detector_record(request.user, BUILTIN_DETECTORS[name]) for name in sorted(BUILTIN_DETECTORS)]
        return Response(s.DetectorOutput(records, many=True).data)


# --------------------------------------------------------------------------- datasets
def api_datasets(user):
    """The user's datasets, without the hidden ones that back batch jobs."""
    return dataset_selectors.datasets_visible_to(user).filter(hidden=False)


class DatasetListView(ApiView):
    @extend_schema(
        tags=["datasets"],
        operation_id="datasets_list",
        summary="List your datasets",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.DatasetOutput), **error_responses(404)},
    )
    def get(self, request):
        return self.paginate(api_datasets(request.user), s.DatasetOutput, "-created_at")

    @extend_schema(
        tags=["datasets"],
        summary="Create a dataset",
        request=s.DatasetInput,
        responses={201: s.DatasetOutput, **error_responses(400, 403, 413, 415)},
    )
    def post(self, request):
        data = self.valid(s.DatasetInput).validated_data
        dataset = dataset_services.dataset_create(owner=request.user, **data)
        dataset = dataset_selectors.datasets_visible_to(request.user).get(pk=dataset.pk)
        return self.out(s.DatasetOutput, dataset, 201, Location=s.page_url(request, "dataset-detail", pk=dataset.pk))


class DatasetDetailView(ApiView):
    @extend_schema(
        tags=["datasets"], summary="Read a dataset", responses={200: s.DatasetOutput, **error_responses(404)}
    )
    def get(self, request, pk):
        return self.out(s.DatasetOutput, get_object_or_404(api_datasets(request.user), pk=pk))

    @extend_schema(
        tags=["datasets"],
        summary="Delete a dataset and its files",
        description="Refused (409) while experiments use it.",
        responses={204: None, **error_responses(403, 404, 409)},
    )
    def delete(self, request, pk):
        dataset_services.dataset_delete(dataset=get_object_or_404(api_datasets(request.user), pk=pk))
        return Response(status=204)


class DatasetPairsView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True
    throttle_scope = "uploads"

    @extend_schema(
        tags=["datasets"],
        operation_id="datasets_pairs_list",
        summary="List a dataset's pairs",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.PairOutput), **error_responses(404)},
    )
    def get(self, request, pk):
        dataset = get_object_or_404(api_datasets(request.user), pk=pk)
        return self.paginate(dataset.pairs.all(), s.PairOutput, "name")

    @extend_schema(
        tags=["datasets"],
        summary="Upload one pair",
        description="Multipart: `image_a`, `image_b`, optional `label`, `name`, `category`, `split`.",
        request={"multipart/form-data": s.PairInput},
        responses={201: s.PairOutput, **error_responses(400, 403, 404, 413, 415)},
    )
    def post(self, request, pk):
        dataset = get_object_or_404(api_datasets(request.user), pk=pk)
        data = self.valid(s.PairInput).validated_data
        label = data.get("label")
        pair = dataset_services.pair_create(
            dataset=dataset,
            name=data.get("name") or _stem(data["image_b"].name),
            a_bytes=read_upload(data["image_a"], "image_a"),
            b_bytes=read_upload(data["image_b"], "image_b"),
            label_bytes=read_upload(label, "label") if label else None,
            category=data["category"],
            split=data["split"],
        )
        return self.out(s.PairOutput, pair, 201)


def _stem(filename: str) -> str:
    return filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]


def _query_flag(request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


class DatasetImportView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True
    throttle_scope = "uploads"

    @extend_schema(
        tags=["datasets"],
        summary="Import a LEVIR-CD zip",
        description=(
            "A zip with `A/`, `B/`, optional `label/`, `list/{train,val,test}.txt` and `categories.csv`. "
            "Every file is checked first; with any problem nothing is written and the answer is 422 with the "
            "report. `?dry_run=1` checks and reports without writing."
        ),
        parameters=[OpenApiParameter("dry_run", bool, description="check only, write nothing")],
        request={"multipart/form-data": s.ImportInput},
        responses={
            200: OpenApiResponse(s.ImportReportOutput, description="dry run: the report"),
            201: OpenApiResponse(s.ImportReportOutput, description="imported"),
            422: OpenApiResponse(ReportErrorSerializer, description="the report's problems; nothing was written"),
            **error_responses(400, 403, 404, 413, 415),
        },
    )
    def post(self, request, pk):
        dataset = get_object_or_404(api_datasets(request.user), pk=pk)
        data = self.valid(s.ImportInput).validated_data
        files = batches.read_archive(read_upload(data["file"], "file"))
        report = ingest.check_files(files, category=data["category"])
        if not report.ok:
            raise batches.ImportRejected("The archive has problems; nothing was imported.", report.as_dict())
        dry_run = _query_flag(request, "dry_run")
        if not dry_run:
            try:
                ingest.import_checked(dataset=dataset, report=report)
            except ServiceError as exc:
                raise batches.ImportRejected(exc.message, batches.failed_report(exc.message)) from None
        body = {**report.as_dict(), "dry_run": dry_run, "imported": 0 if dry_run else len(report.pairs)}
        return Response(body, status=200 if dry_run else 201)


# --------------------------------------------------------------------------- experiments and runs
def api_experiments(user):
    return run_selectors.experiments_visible_to(user).exclude(runs__batch_jobs__isnull=False)


class ExperimentListView(ApiView):
    @extend_schema(
        tags=["experiments"],
        operation_id="experiments_list",
        summary="List your experiments",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.ExperimentOutput), **error_responses(404)},
    )
    def get(self, request):
        return self.paginate(api_experiments(request.user), s.ExperimentOutput, "-created_at")

    @extend_schema(
        tags=["experiments"],
        summary="Create an experiment",
        description="Detectors by registry name (see `/api/v1/detectors/`); settings as on the page.",
        request=s.ExperimentInput,
        responses={201: s.ExperimentOutput, **error_responses(400, 403, 404, 413, 415)},
    )
    def post(self, request):
        data = dict(self.valid(s.ExperimentInput).validated_data)
        dataset = api_datasets(request.user).filter(pk=data.pop("dataset")).first()
        if dataset is None:
            raise ApiError("Dataset not found.", status_code=404, field="dataset")
        experiment = run_services.experiment_create(owner=request.user, dataset=dataset, **data)
        return self.out(s.ExperimentOutput, experiment, 201)


class ExperimentDetailView(ApiView):
    @extend_schema(
        tags=["experiments"], summary="Read an experiment", responses={200: s.ExperimentOutput, **error_responses(404)}
    )
    def get(self, request, pk):
        return self.out(s.ExperimentOutput, get_object_or_404(api_experiments(request.user), pk=pk))

    @extend_schema(
        tags=["experiments"],
        summary="Delete an experiment, its runs and their files",
        description="Refused (409) while a run is active.",
        responses={204: None, **error_responses(403, 404, 409)},
    )
    def delete(self, request, pk):
        run_services.experiment_delete(experiment=get_object_or_404(api_experiments(request.user), pk=pk))
        return Response(status=204)


def accepted_run(view, run, status_code=202) -> Response:
    location = s.page_url(view.request, "run-detail", pk=run.pk)
    return view.out(s.RunOutput, run, status_code, Location=location)


class ExperimentRunsView(ApiView):
    @extend_schema(
        tags=["runs"],
        operation_id="experiments_runs_list",
        summary="List an experiment's runs",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.RunOutput), **error_responses(404)},
    )
    def get(self, request, pk):
        experiment = get_object_or_404(api_experiments(request.user), pk=pk)
        return self.paginate(
            run_selectors.runs_visible_to(request.user).filter(experiment=experiment), s.RunOutput, "-created_at"
        )

    @extend_schema(
        tags=["runs"],
        summary="Start a run",
        description="Queues the run; `Location` points at it. Follow it with `GET` or over the WebSocket.",
        request=None,
        responses={202: s.RunOutput, **error_responses(400, 403, 404)},
    )
    def post(self, request, pk):
        experiment = get_object_or_404(api_experiments(request.user), pk=pk)
        return accepted_run(self, run_services.run_start(experiment=experiment))


def visible_run(request, pk):
    return get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)


class RunDetailView(ApiView):
    @extend_schema(
        tags=["runs"], summary="A run's state and progress", responses={200: s.RunOutput, **error_responses(404)}
    )
    def get(self, request, pk):
        return self.out(s.RunOutput, visible_run(request, pk))


class RunCancelView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="Cancel a queued or running run",
        description="A queued run is cancelled at once; a running one at the next batch.",
        request=None,
        responses={200: s.RunOutput, **error_responses(403, 404, 409)},
    )
    def post(self, request, pk):
        return self.out(s.RunOutput, run_services.run_cancel(run=visible_run(request, pk)))


class RunRetryView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="Queue a failed or cancelled run again",
        request=None,
        responses={202: s.RunOutput, **error_responses(403, 404, 409)},
    )
    def post(self, request, pk):
        return accepted_run(self, run_services.run_retry(run=visible_run(request, pk)))


class RunCloneView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="Start a new run with the same record (pinned weights)",
        request=None,
        responses={202: s.RunOutput, **error_responses(400, 403, 404)},
    )
    def post(self, request, pk):
        return accepted_run(self, run_services.run_clone(run=visible_run(request, pk)))


class RunWsTicketView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="A one-time ticket for the run's WebSocket",
        description=(
            f"Open `url` within {ws_tickets.TICKET_TTL_S} s; the ticket works once and only for this run. "
            "The socket sends a snapshot, then `progress` and `state` events."
        ),
        request=None,
        responses={201: s.WsTicketOutput, **error_responses(403, 404)},
    )
    def post(self, request, pk):
        run = visible_run(request, pk)
        ticket = ws_tickets.ticket_create(user=request.user, run_id=run.pk)
        scheme = "wss" if request.is_secure() else "ws"
        url = f"{scheme}://{request.get_host()}/ws/runs/{run.pk}/?ticket={ticket}"
        return Response({"ticket": ticket, "url": url, "expires_in": ws_tickets.TICKET_TTL_S}, status=201)


class RunLeaderboardView(ApiView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        tags=["runs"],
        summary="The run's leaderboard",
        description="JSON, or CSV with `?format=csv` (one ranked row per detector). 409 until the run succeeded.",
        responses={
            (200, "application/json"): s.LeaderboardOutput,
            (200, "text/csv"): OpenApiTypes.STR,
            **error_responses(404, 409),
        },
    )
    def get(self, request, pk):
        run = visible_run(request, pk)
        if run.state != RunState.SUCCEEDED:
            raise ApiError(f"The run is {run.state}; its leaderboard is ready once it has succeeded.", status_code=409)
        if request.accepted_renderer.format == "csv":
            response = HttpResponse(exports.leaderboard_csv(run), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-leaderboard.csv"'
            return response
        return Response(exports.leaderboard_json(run))


RESULT_ORDER = {
    "iou": "iou",
    "f1": "f1",
    "latency_ms": "latency_ms",
    "pair__name": "pair__name",
    "detector": "detector",
}
NUMERIC_ORDER = {"iou", "f1", "latency_ms"}


class RunResultsView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="The run's per-pair results",
        description=(
            "Filter by `detector`, `category` and metric ranges (`iou_min`, `iou_max`, `f1_min`, `f1_max`, "
            "`latency_ms_min`, ...); order with `ordering` (`-iou` = worst last). Each result links its heatmap, "
            "mask and error map (`/api/v1/media/...`, token or session)."
        ),
        parameters=[s.ResultFilterInput, *PAGE_PARAMETERS],
        responses={200: paged(s.ResultOutput), **error_responses(400, 404)},
    )
    def get(self, request, pk):
        run = visible_run(request, pk)
        filters = s.ResultFilterInput(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        try:
            results = run_selectors.run_results_filtered(
                run, detector=data.get("detector"), category=data.get("category"), metric_ranges=filters.metric_ranges()
            )
        except ValueError as exc:
            raise ApiError(str(exc)) from None
        ordering = data.get("ordering") or ""
        field = ordering.lstrip("-")
        if field in NUMERIC_ORDER:  # nulls (unlabelled pairs) sort as -1: a cursor cannot hold NULL
            results = results.annotate(sort_key=Coalesce(F(field), Value(-1.0), output_field=FloatField()))
        elif field:
            results = results.annotate(sort_key=F(RESULT_ORDER[field]))
        else:
            results = results.annotate(sort_key=F("pk"))
        return self.paginate(results, s.ResultOutput, ("-" if ordering.startswith("-") else "") + "sort_key")


# --------------------------------------------------------------------------- media for API clients
class MediaView(ApiView):
    renderer_classes = [JSONRenderer, PassthroughRenderer]

    @extend_schema(
        tags=["media"],
        summary="A media file (heatmap, mask, image) you may read",
        description="With S3 storage the answer is a redirect to a short-lived presigned URL.",
        responses={(200, "*/*"): OpenApiTypes.BINARY, 302: None, **error_responses(404)},
    )
    def get(self, request, key):
        return media_response(request.user, key)


# --------------------------------------------------------------------------- checkpoints and training
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")


class CheckpointListView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True
    throttle_scope = "uploads"

    @extend_schema(
        tags=["checkpoints"],
        operation_id="checkpoints_list",
        summary="Checkpoints you can use (yours and public ones)",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.CheckpointOutput), **error_responses(404)},
    )
    def get(self, request):
        return self.paginate(
            checkpoint_selectors.checkpoints_visible_to(request.user), s.CheckpointOutput, "-created_at"
        )

    @extend_schema(
        tags=["checkpoints"],
        summary="Upload a checkpoint",
        description=(
            "A `.pt` file written by `inference.weights.save_checkpoint` (`{'state_dict': ..., 'meta': {'detector': "
            "name, ...}}`) or a `.safetensors` file with `meta` in its metadata. Read with "
            "`torch.load(weights_only=True)`: a pickle of arbitrary objects is refused (422)."
        ),
        request={"multipart/form-data": s.CheckpointInput},
        responses={
            200: OpenApiResponse(s.CheckpointOutput, description="you had uploaded these exact bytes before"),
            201: s.CheckpointOutput,
            **error_responses(400, 403, 404, 409, 413, 415, 422),
        },
    )
    def post(self, request):
        data = self.valid(s.CheckpointInput).validated_data
        upload = data["file"]
        suffix = "." + upload.name.rsplit(".", 1)[-1].lower() if "." in upload.name else ""
        if suffix not in CHECKPOINT_SUFFIXES:
            raise ApiError("Upload a .pt or .safetensors checkpoint file.", field="file")
        content = read_upload(upload, "file")
        dataset = None
        if data.get("dataset") is not None:
            dataset = api_datasets(request.user).filter(pk=data["dataset"]).first()
            if dataset is None:
                raise ApiError("Dataset not found.", status_code=404, field="dataset")
        meta, sha256 = _read_checkpoint(content, suffix)
        detector = _checkpoint_detector(meta, data.get("detector"))
        if ModelCheckpoint.objects.filter(sha256=sha256).exists():  # the same bytes, registered before
            existing = checkpoint_selectors.checkpoints_visible_to(request.user).filter(sha256=sha256).first()
            if existing is None:
                raise ApiError("These exact weights are already registered by another user.", status_code=409)
            return self.out(s.CheckpointOutput, existing, 200)
        checkpoint = checkpoint_services.checkpoint_register(
            owner=request.user,
            detector=detector,
            dataset=dataset,
            data=content,
            sha256=sha256,
            epochs=_int(meta.get("epochs")),
            val_metrics=_dict(meta.get("val_metrics")),
            config=meta,
            suffix=".safetensors" if suffix == ".safetensors" else ".pt",
        )
        return self.out(s.CheckpointOutput, checkpoint, 201)


def _int(value) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _read_checkpoint(content: bytes, suffix: str) -> tuple[dict, str]:
    """(meta, sha256) of a checkpoint's bytes; 422 for anything `load_checkpoint` refuses."""
    import tempfile
    from pathlib import Path

    from inference.weights import WeightsError, load_checkpoint  # torch, only here

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"upload{suffix}"
        path.write_bytes(content)
        try:
            _, meta, sha256 = load_checkpoint(path)
        except WeightsError as exc:
            message = str(exc).replace(str(path), "the file")
            raise ApiError(
                f"This file cannot be used as a checkpoint: {message}. Only plain tensor checkpoints "
                "(torch.save of {'state_dict', 'meta'} or .safetensors) are accepted.",
                status_code=422,
                field="file",
            ) from None
    return meta, sha256


def _checkpoint_detector(meta: dict, given: str | None) -> str:
    saved_for = meta.get("detector")
    if not isinstance(saved_for, str) or not saved_for:
        raise ApiError(
            "The checkpoint's meta does not name its detector (meta['detector']).", status_code=422, field="file"
        )
    if given and given != saved_for:
        raise ApiError(f"The checkpoint was saved for {saved_for!r}, not {given!r}.", status_code=422, field="detector")
    try:
        entry = catalogue_entry(saved_for)
    except KeyError as exc:
        raise ApiError(str(exc.args[0]), status_code=422, field="detector") from None
    if not entry.learned:
        raise ApiError(
            f"{saved_for} is not a learned detector; it takes no weights.", status_code=422, field="detector"
        )
    return saved_for


class TrainingListView(ApiView):
    @extend_schema(
        tags=["training"],
        operation_id="training_list",
        summary="Your training jobs",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.TrainingOutput), **error_responses(404)},
    )
    def get(self, request):
        return self.paginate(training_selectors.training_jobs_visible_to(request.user), s.TrainingOutput, "-created_at")

    @extend_schema(
        tags=["training"],
        summary="Train a learned detector on one of your datasets",
        description="Queued on the `gpu` workers; the dataset needs at least two labelled pairs.",
        request=s.TrainingInput,
        responses={202: s.TrainingOutput, **error_responses(400, 403, 404, 413, 415)},
    )
    def post(self, request):
        data = dict(self.valid(s.TrainingInput).validated_data)
        dataset = api_datasets(request.user).filter(pk=data.pop("dataset")).first()
        if dataset is None:
            raise ApiError("Dataset not found.", status_code=404, field="dataset")
        job = training_services.training_start(owner=request.user, dataset=dataset, **data)
        return self.out(s.TrainingOutput, job, 202, Location=s.page_url(request, "training-detail", pk=job.pk))


def visible_training(request, pk):
    return get_object_or_404(training_selectors.training_jobs_visible_to(request.user), pk=pk)


class TrainingDetailView(ApiView):
    @extend_schema(
        tags=["training"],
        summary="A training job's state and progress",
        responses={200: s.TrainingOutput, **error_responses(404)},
    )
    def get(self, request, pk):
        return self.out(s.TrainingOutput, visible_training(request, pk))


class TrainingCancelView(ApiView):
    @extend_schema(
        tags=["training"],
        summary="Cancel a training job",
        request=None,
        responses={200: s.TrainingOutput, **error_responses(403, 404, 409)},
    )
    def post(self, request, pk):
        return self.out(s.TrainingOutput, training_services.training_cancel(job=visible_training(request, pk)))


# --------------------------------------------------------------------------- batches
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
    jobs = BatchJob.objects.select_related("run")
    if not request.user.is_staff:
        jobs = jobs.filter(owner=request.user)
    return get_object_or_404(jobs, pk=pk)


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
            422: OpenApiResponse(ReportErrorSerializer, description="the files have problems, or the key was reused"),
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
        jobs = BatchJob.objects.select_related("run").filter(owner=request.user)
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
            "row per pair and detector) and `leaderboard.csv`. Built on first request; 409 until the run succeeded."
        ),
        responses={(200, "application/zip"): OpenApiTypes.BINARY, **error_responses(404, 409)},
    )
    def get(self, request, pk):
        job = visible_batch(request, pk)
        key = batches.batch_archive(job)
        response = HttpResponse(storage.read_bytes(key), content_type="application/zip")
        response["Content-Disposition"] = f'attachment; filename="{batches.archive_name(job)}"'
        return response


# --------------------------------------------------------------------------- quick diff
class DiffView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True
    throttle_scope = "diff"

    @extend_schema(
        tags=["diff"],
        summary="Diff two images now (classical detectors)",
        description=(
            f"Runs `absdiff` or `ssim` in the request and answers base64 PNGs (heatmap, mask), the changed fraction "
            f"and, with a `label`, the metrics. Images up to {DIFF_MAX_PIXELS} pixels each (1024x1024; 413 beyond). "
            "Learned detectors are refused with 422: they run on GPU workers, so submit them as a batch "
            "(`POST /api/v1/batches/`)."
        ),
        request={"multipart/form-data": s.DiffInput},
        responses={200: s.DiffOutput, **error_responses(400, 403, 413, 415, 422)},
    )
    def post(self, request):
        from inference.evaluation import pair_metrics
        from inference.images import ImageError, image_size, load_image, load_mask
        from inference.pixel_maps import change_map
        from inference.render import heatmap_png, mask_png

        data = self.valid(s.DiffInput).validated_data
        name = data["detector"]
        try:
            entry = catalogue_entry(name)
        except KeyError as exc:
            raise ApiError(str(exc.args[0]), field="detector") from None
        if entry.name not in SYNC_DIFF_DETECTORS:
            raise ApiError(
                f"{name} runs on GPU workers, not in the request; submit the pair with POST /api/v1/batches/ "
                f"(detectors={name}). Quick diffs support {', '.join(SYNC_DIFF_DETECTORS)}.",
                status_code=422,
                field="detector",
            )
        images = {}
        for field in ("image_a", "image_b"):
            content = read_upload(data[field], field)
            try:
                width, height = image_size(content, max_pixels=settings.MAX_IMAGE_PIXELS)
                if width * height > DIFF_MAX_PIXELS:
                    raise PayloadTooLarge(
                        f"{field} is {width}x{height}; quick diffs take up to {DIFF_MAX_PIXELS} "
                        "pixels (1024x1024). Submit larger images as a batch.",
                        field=field,
                    )
                images[field] = load_image(content, max_pixels=DIFF_MAX_PIXELS)
            except ImageError as exc:
                raise ApiError(f"{field}: {exc}", field=field) from None
        a, b = images["image_a"], images["image_b"]
        label = None
        if data.get("label"):
            try:
                label, _ = load_mask(read_upload(data["label"], "label"), size=(b.shape[1], b.shape[0]))
            except ImageError as exc:
                raise ApiError(f"label: {exc}", field="label") from None
        prob = change_map(entry.name, a, b)
        mask = prob >= data["threshold"]
        metrics = pair_metrics(prob, mask, label)
        return Response(
            {
                "detector": entry.name,
                "width": int(b.shape[1]),
                "height": int(b.shape[0]),
                "threshold": data["threshold"],
                "changed_fraction": metrics["changed_fraction"],
                "heatmap_png": base64.b64encode(heatmap_png(prob)).decode(),
                "mask_png": base64.b64encode(mask_png(mask)).decode(),
                "metrics": exports.compact_metrics(metrics) if label is not None else None,
            }
        )
