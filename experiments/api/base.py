"""What every API view module shares: the base view, renderers, cursor pagination, uploads.

Views are thin: they read through selectors and write through services. Another user's objects
answer 404. Errors come in one JSON shape (see `experiments.api.errors`).
"""

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from experiments.api import serializers as s
from experiments.api.errors import PayloadTooLarge
from experiments.datasets import selectors as dataset_selectors

MULTIPART_OVERHEAD = 256 * 1024


# --------------------------------------------------------------------------- renderers
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


# --------------------------------------------------------------------------- pagination
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


# --------------------------------------------------------------------------- the base view
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


# --------------------------------------------------------------------------- request helpers
def read_upload(upload, field: str) -> bytes:
    if upload.size > s.max_upload_bytes():
        raise PayloadTooLarge(
            f"{field} is {upload.size / 2**20:.1f} MB; files up to {settings.MAX_UPLOAD_MB} MB are accepted.",
            field=field,
        )
    return upload.read()


def query_flag(request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def api_datasets(user):
    """The user's datasets, without the hidden ones that back batch jobs."""
    return dataset_selectors.datasets_visible_to(user).filter(hidden=False)
