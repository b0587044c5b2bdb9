"""Media files (heatmaps, masks, images, checkpoints) for API clients: the one media rule of
`experiments.media`, with token or session authentication."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.renderers import JSONRenderer

from experiments.api.base import ApiView, PassthroughRenderer
from experiments.api.errors import error_responses
from experiments.media import media_response


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
