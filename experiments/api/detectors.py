"""The detector list: every registered detector (plug-ins included), facts from the registry."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from experiments.api import serializers as s
from experiments.api.base import ApiView
from experiments.api.errors import error_responses
from experiments.plans.kinds import plans_for
from experiments.plans.record import DetectorPlan

SYNC_DIFF_DETECTORS = ("absdiff", "ssim")  # cheap enough to run inside a request (POST /api/v1/diff/)


def detector_record(plan: DetectorPlan) -> dict:
    """The plan's description (params and input size included), with what a run would use for its owner."""
    return {
        **plan.as_dict(),
        "weights": plan.weights.listed,
        "weights_available": plan.weights.listed != "untrained",
        "sync_diff": plan.name in SYNC_DIFF_DETECTORS,
        "available": plan.availability.available,
        "unavailable_reason": plan.availability.reason,
    }


class DetectorListView(ApiView):
    @extend_schema(
        tags=["detectors"],
        summary="List the detectors",
        description=(
            "Every registered detector (plug-ins included) with its family, queue, parameter count and default "
            "input size, as the registry declares them (the web process never loads torch). `weights` says what "
            "a run would use for you: the newest checkpoint you can see, or `untrained` for a learned detector "
            "without one. `available` says whether a run with weights `auto` can load trained or ImageNet-pretrained "
            "weights for you; when not, `unavailable_reason` says why and what fixes it (runs asking for `auto` "
            "are refused)."
        ),
        responses={200: s.DetectorOutput(many=True), **error_responses()},
    )
    def get(self, request):
        records = [detector_record(plan) for plan in plans_for(request.user).values()]
        return Response(s.DetectorOutput(records, many=True).data)
