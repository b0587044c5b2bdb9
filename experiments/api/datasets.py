"""Datasets and their pairs: list, create, read, delete, upload one pair, import a LEVIR-CD zip."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from experiments.api import serializers as s
from experiments.api.base import PAGE_PARAMETERS, ApiView, api_datasets, checked_upload, paged, query_flag, read_upload
from experiments.api.errors import ReportErrorSerializer, error_responses
from experiments.datasets import ingest
from experiments.datasets import services as dataset_services


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
        dataset = api_datasets(request.user).get(pk=dataset.pk)
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


def _stem(filename: str) -> str:
    return filename.rsplit("/", 1)[-1].rsplit(".", 1)[0]


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


class DatasetImportView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True
    throttle_scope = "uploads"

    @extend_schema(
        tags=["datasets"],
        summary="Import a dataset zip (LEVIR-CD, DSIFN-CD, WHU-CD, CDD, S2Looking or loose files)",
        description=(
            "A zip in a supported layout, recognised from its folders: LEVIR-CD `train|val|test/A,B,label` or "
            "`A/ B/ label/` with `list/{train,val,test}.txt`, DSIFN-CD `t1/ t2/ mask/`, WHU-CD `A,B,label` or "
            "`before,after,label`, CDD `A/ B/ OUT/`, S2Looking `Image1/ Image2/ label/`, or loose "
            "`<name>_A/_B/_label` files; optional `categories.csv`. Each pair keeps its split; a name may repeat "
            "across splits, never within one. Pairs are checked and stored one at a time; with any problem "
            "nothing is written and the answer is 422 with the report. `?dry_run=1` checks and reports without "
            "writing."
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
        dry_run = query_flag(request, "dry_run")
        body = ingest.archive_import(
            dataset=dataset, data=checked_upload(data["file"], "file"), category=data["category"], dry_run=dry_run
        )
        return Response(body, status=200 if dry_run else 201)
