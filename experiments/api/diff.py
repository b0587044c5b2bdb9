"""Quick diffs: two images through a classical detector inside the request.

Torch is never imported here; the `inference` helpers are imported when the view runs.
"""

import base64

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from experiments.api import serializers as s
from experiments.api.base import ApiView, read_upload
from experiments.api.detectors import SYNC_DIFF_DETECTORS
from experiments.api.errors import ApiError, PayloadTooLarge, error_responses
from experiments.reporting import results
from inference.catalogue import catalogue_entry

DIFF_MAX_PIXELS = 1024 * 1024


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
        from inference.pixel_maps import change_map
        from inference.render import heatmap_png, mask_png

        data = self.valid(s.DiffInput).validated_data
        name = data["detector"]
        try:
            entry = catalogue_entry(name)
        except KeyError as exc:
            raise ApiError(str(exc.args[0]), status_code=422, field="detector") from None
        if entry.name not in SYNC_DIFF_DETECTORS:
            raise ApiError(
                f"{name} runs on GPU workers, not in the request; submit the pair with POST /api/v1/batches/ "
                f"(detectors={name}). Quick diffs support {', '.join(SYNC_DIFF_DETECTORS)}.",
                status_code=422,
                field="detector",
            )
        a, b, label = read_images(data)
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
                "metrics": results.compact_metrics(metrics) if label is not None else None,
            }
        )


def read_images(data: dict):
    """(A, B, label or None) from the uploads: 413 above `DIFF_MAX_PIXELS`, 422 for unreadable files."""
    from inference.images import ImageError, image_size, load_image, load_mask

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
            raise ApiError(f"{field}: {exc}", status_code=422, field=field) from None
    a, b = images["image_a"], images["image_b"]
    label = None
    if data.get("label"):
        try:
            label, _ = load_mask(read_upload(data["label"], "label"), size=(b.shape[1], b.shape[0]))
        except ImageError as exc:
            raise ApiError(f"label: {exc}", status_code=422, field="label") from None
    return a, b, label
