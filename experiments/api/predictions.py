"""A dataset's uploaded predictions: upload a zip of maps, list, read, delete."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from experiments.api import serializers as s
from experiments.api.base import PAGE_PARAMETERS, ApiView, api_datasets, paged, read_upload
from experiments.api.errors import ErrorDetailSerializer, error_responses
from experiments.predictions import selectors, services


class PredictionsErrorDetail(ErrorDetailSerializer):
    report = s.PredictionsReportOutput(required=False, help_text="present when the archive was read")


class PredictionsError(serializers.Serializer):
    """A 422 that carries the archive's report when the archive was read (a bad or taken name, or a
    dataset without pairs, answers without one)."""

    error = PredictionsErrorDetail()


def _sets(request, dataset):
    return selectors.prediction_sets_visible_to(request.user).filter(dataset=dataset)


class DatasetPredictionsView(ApiView):
    parser_classes = [MultiPartParser, FormParser]
    takes_uploads = True
    throttle_scope = "uploads"

    @extend_schema(
        tags=["predictions"],
        operation_id="datasets_predictions_list",
        summary="List the predictions uploaded for a dataset",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.PredictionSetOutput), **error_responses(404)},
    )
    def get(self, request, pk):
        dataset = get_object_or_404(api_datasets(request.user), pk=pk)
        return self.paginate(_sets(request, dataset), s.PredictionSetOutput, "-created_at")

    @extend_schema(
        tags=["predictions"],
        summary="Upload predictions made elsewhere for every pair",
        description=(
            "Multipart: `archive` (a zip with one file per pair, `<pair name>.png` or `.npy`, or "
            "`<split>/<pair name>.<ext>` when the name is in several splits), `name` and `kind` (`mask` or "
            "`probability`). Maps must have B's size. Every pair must be covered: otherwise 422 with the "
            "missing, unknown and ambiguous names, and nothing is stored. The set is then the detector "
            "`external:<name>` for experiments on this dataset (latency and memory: not measured here)."
        ),
        request={"multipart/form-data": s.PredictionSetInput},
        responses={
            201: s.PredictionSetOutput,
            422: OpenApiResponse(
                PredictionsError,
                description="what does not fit (`report`: every file's problem, when the archive was read); "
                "nothing was stored",
            ),
            **error_responses(400, 403, 404, 413, 415),
        },
    )
    def post(self, request, pk):
        dataset = get_object_or_404(api_datasets(request.user), pk=pk)
        data = self.valid(s.PredictionSetInput).validated_data
        predictions = services.prediction_set_upload(
            owner=request.user,
            dataset=dataset,
            name=data["name"],
            kind=data["kind"],
            archive=read_upload(data["archive"], "archive"),
        )
        return self.out(s.PredictionSetOutput, predictions, 201)


class DatasetPredictionDetailView(ApiView):
    @extend_schema(
        tags=["predictions"],
        summary="Read one prediction set",
        responses={200: s.PredictionSetOutput, **error_responses(404)},
    )
    def get(self, request, pk, set_pk):
        dataset = get_object_or_404(api_datasets(request.user), pk=pk)
        return self.out(s.PredictionSetOutput, get_object_or_404(_sets(request, dataset), pk=set_pk))

    @extend_schema(
        tags=["predictions"],
        summary="Delete a prediction set and its maps",
        description="Refused (409) while a queued or running run scores it; finished runs keep their results.",
        responses={204: None, **error_responses(403, 404, 409)},
    )
    def delete(self, request, pk, set_pk):
        dataset = get_object_or_404(api_datasets(request.user), pk=pk)
        services.prediction_set_delete(prediction_set=get_object_or_404(_sets(request, dataset), pk=set_pk))
        return Response(status=204)
