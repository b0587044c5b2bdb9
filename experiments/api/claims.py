"""Claimed figures on your own checkpoints, ONNX models and prediction sets: list and add.

Whoever may see the thing claimed for lists its claims (its owner, staff; a public checkpoint's: any
user); only its owner adds one. Anyone else gets 404, as for something that does not exist. The thesis's claims for its three models are built in
(`experiments.claims.thesis`) and shown on every run's thesis table and leaderboard."""

from django.http import Http404
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import JSONParser

from experiments.api import serializers as s
from experiments.api.base import PAGE_PARAMETERS, ApiView, paged
from experiments.api.errors import error_responses
from experiments.checkpoints.selectors import checkpoints_visible_to
from experiments.claims import selectors as claim_selectors
from experiments.claims import services as claim_services
from experiments.onnx_models.selectors import models_visible_to
from experiments.predictions.selectors import prediction_sets_visible_to

DESCRIPTION = (
    "A claim is a figure a source gives for this model (a paper, a thesis, a model card): `metric` (iou, f1, "
    "precision, recall, latency_ms, memory_mb), `value`, `source`, and as far as the source says, `dataset`, "
    "`hardware` and `input_size`. Runs show it beside the measured figure with the difference and what differs "
    "between the two measurements (data, input size, hardware). Listed for whoever may see the thing; added by "
    "its owner only: 404 for anyone else."
)


class _ClaimsView(ApiView):
    parser_classes = [JSONParser]
    field = ""  # the subject's field on ClaimedFigure
    tag = ""

    def visible(self, request, **kwargs):
        """The subject as `request.user` may see it (404 otherwise)."""
        raise NotImplementedError

    def list_claims(self, request, **kwargs):
        return self.paginate(claim_selectors.claims_of(self.visible(request, **kwargs)), s.ClaimOutput, "created_at")

    def add_claim(self, request, **kwargs):
        subject = self.visible(request, **kwargs)
        if subject.owner_id != request.user.pk:  # staff see others' things and public checkpoints; only owners claim
            raise Http404
        data = self.valid(s.ClaimInput).validated_data
        claim = claim_services.claimed_figure_add(owner=request.user, subject=subject, field=self.field, data=data)
        return self.out(s.ClaimOutput, claim, 201)


def _schemas(tag: str, what: str):
    listing = extend_schema(
        tags=[tag], operation_id=f"{tag}_claims_list", summary=f"Claimed figures of your {what}",
        description=DESCRIPTION, parameters=PAGE_PARAMETERS, responses={200: paged(s.ClaimOutput), **error_responses(404)},
    )  # fmt: skip
    adding = extend_schema(
        tags=[tag], operation_id=f"{tag}_claims_create", summary=f"Add a claimed figure to your {what}",
        description=DESCRIPTION, request=s.ClaimInput, responses={201: s.ClaimOutput, **error_responses(400, 404, 415)},
    )  # fmt: skip
    return listing, adding


_CHECKPOINT = _schemas("checkpoints", "checkpoint")
_MODEL = _schemas("models", "ONNX model")
_PREDICTIONS = _schemas("predictions", "prediction set")


class CheckpointClaimsView(_ClaimsView):
    field = "checkpoint"

    def visible(self, request, pk):
        return get_object_or_404(checkpoints_visible_to(request.user), pk=pk)

    @_CHECKPOINT[0]
    def get(self, request, pk):
        return self.list_claims(request, pk=pk)

    @_CHECKPOINT[1]
    def post(self, request, pk):
        return self.add_claim(request, pk=pk)


class ModelClaimsView(_ClaimsView):
    field = "uploaded_model"

    def visible(self, request, pk):
        return get_object_or_404(models_visible_to(request.user), pk=pk)

    @_MODEL[0]
    def get(self, request, pk):
        return self.list_claims(request, pk=pk)

    @_MODEL[1]
    def post(self, request, pk):
        return self.add_claim(request, pk=pk)


class PredictionSetClaimsView(_ClaimsView):
    field = "prediction_set"

    def visible(self, request, pk, set_pk):
        return get_object_or_404(prediction_sets_visible_to(request.user).filter(dataset_id=pk), pk=set_pk)

    @_PREDICTIONS[0]
    def get(self, request, pk, set_pk):
        return self.list_claims(request, pk=pk, set_pk=set_pk)

    @_PREDICTIONS[1]
    def post(self, request, pk, set_pk):
        return self.add_claim(request, pk=pk, set_pk=set_pk)
