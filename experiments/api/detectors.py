"""The detector list: every registered detector (plug-ins included), facts from the registry."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from experiments.api import serializers as s
from experiments.api.base import ApiView
from experiments.api.errors import error_responses
from experiments.checkpoints import selectors as checkpoint_selectors
from experiments.checkpoints.availability import detector_availability
from experiments.detectors import BROUGHT_IN_FAMILIES, detector_entries
from inference.catalogue import CatalogueEntry

SYNC_DIFF_DETECTORS = ("absdiff", "ssim")  # cheap enough to run inside a request (POST /api/v1/diff/)


def detector_record(user, entry: CatalogueEntry) -> dict:
    """The catalogue entry (params and input size included), with what a run would use for `user`."""
    if entry.family in BROUGHT_IN_FAMILIES:
        weights, available = "brought in", True
    elif not entry.learned:
        weights, available = "none", True
    else:
        checkpoint = checkpoint_selectors.newest_checkpoint(user, entry.name)
        weights, available = (checkpoint.provenance, True) if checkpoint else ("untrained", False)
    availability = detector_availability(user, entry.name)
    return {
        **entry.as_dict(),
        "weights": weights,
        "weights_available": available,
        "sync_diff": entry.name in SYNC_DIFF_DETECTORS,
        "available": availability.available,
        "unavailable_reason": availability.reason,
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
        records = [detector_record(request.user, entry) for entry in detector_entries(request.user).values()]
        return Response(s.DetectorOutput(records, many=True).data)
