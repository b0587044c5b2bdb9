"""What every API view module shares: the base view, renderers, cursor pagination, uploads.

Views are thin: they read through selectors and write through services. Another user's objects
answer 404. Errors come in one JSON shape (see `experiments.api.errors`).
"""

from django.conf import settings
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from experiments.api import serializers as s
from experiments.api import strict
from experiments.api.errors import ERROR_DESCRIPTIONS, ApiError, ErrorSerializer, PayloadTooLarge
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
MAX_PAGE_SIZE = 200
INVALID_CURSOR = "cursor is not one this API gave out; use the `next` or `previous` link of a page."


class Cursor(CursorPagination):
    """Cursor pages: a `page_size` the schema does not allow answers 400 (DRF would ignore it); a cursor
    this API did not give out is a page that does not exist (404)."""

    page_size = 50
    max_page_size = MAX_PAGE_SIZE
    page_size_query_param = "page_size"
    invalid_cursor_message = INVALID_CURSOR

    def __init__(self, ordering: str):
        self.ordering = ordering

    def get_page_size(self, request):
        values = request.query_params.getlist(self.page_size_query_param)
        for value in values:
            if not (value.isascii() and value.isdigit() and 1 <= int(value) <= self.max_page_size):
                raise ApiError(
                    f"page_size must be a whole number from 1 to {self.max_page_size}; got {value[:40]!r}.",
                    field="page_size",
                )
        return int(values[-1]) if values else self.page_size

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except (DjangoValidationError, ValueError, TypeError, OverflowError):  # a forged position
            raise NotFound(INVALID_CURSOR) from None


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
    OpenApiParameter(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE},
        description=f"results per page, 1 to {MAX_PAGE_SIZE} (default 50)",
    ),
]


def text_pattern(field: serializers.CharField) -> str:
    """What DRF's CharField accepts, as a pattern: no NUL character, and (unless blank is allowed)
    something besides the whitespace it trims."""
    if field.allow_blank or not field.trim_whitespace:
        return r"^[^\x00]*$"
    return r"^[^\x00]*[^\s\x00][^\x00]*$"


class ApiSchema(AutoSchema):
    """Declares, in one place, the errors every operation of a kind can answer.

    Paged lists answer 400 for a bad `page_size` and 404 for a bad `cursor`; an operation that takes input (it
    declares 400) answers 422 when the input matches the schema but the platform's rules refuse it
    (see `experiments.api.errors.from_service_error`). Every operation answers 400 for a field or query
    parameter it does not declare (`experiments.api.strict`).
    """

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if direction == "request" and type(field) is serializers.CharField and "pattern" not in schema:
            schema["pattern"] = text_pattern(field)
        return schema

    def get_operation(self, *args, **kwargs):
        operation = super().get_operation(*args, **kwargs)
        if operation is None:
            return operation
        responses = operation.setdefault("responses", {})
        wanted = {400, 422} if "400" in responses else {400}
        if any(p.get("name") == "page_size" for p in operation.get("parameters", [])):
            wanted |= {400, 404}
        for code in sorted(wanted):
            if str(code) not in responses:
                response = self._get_response_for_code(ErrorSerializer, str(code))
                response["description"] = ERROR_DESCRIPTIONS[code]
                responses[str(code)] = response
        operation["responses"] = dict(sorted(responses.items()))
        return operation


# --------------------------------------------------------------------------- the base view
class ApiView(APIView):
    """Base view: uploads above `MAX_UPLOAD_MB` answer 413 before they are parsed; fields and query
    parameters the operation does not declare answer 400 (`experiments.api.strict`)."""

    takes_uploads = False
    schema = ApiSchema()

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.takes_uploads and request.method == "POST":
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > s.max_upload_bytes() + MULTIPART_OVERHEAD:
                raise PayloadTooLarge()
        strict.request_check(self, request)

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
        if data is None:  # the query string is checked against the declared parameters (`initial`)
            strict.fields_check(serializer)
        if isinstance(serializer.initial_data, dict) and not hasattr(serializer.initial_data, "getlist"):
            json_types_check(serializer.fields, serializer.initial_data)
        sent_lengths_check(serializer.fields, serializer.initial_data)
        serializer.is_valid(raise_exception=True)
        return serializer


# --------------------------------------------------------------------------- JSON types
_JSON_TYPES = [  # (field class, accepted Python types, schema name); the first match counts
    (serializers.BooleanField, (bool,), "true or false"),
    (serializers.IntegerField, (int,), "an integer"),
    (serializers.FloatField, (int, float), "a number"),
    (serializers.CharField, (str,), "a string"),
    (serializers.MultipleChoiceField, (list,), "a list"),
    (serializers.ChoiceField, (str,), "a string"),
    (serializers.ListField, (list,), "a list"),
    (serializers.DictField, (dict,), "an object"),
]


def _json_type_problem(field, value) -> str | None:
    if value is None:
        return None  # DRF answers null itself (allowed where `allow_null`)
    for field_class, types, name in _JSON_TYPES:
        if isinstance(field, field_class):
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                return f"must be {name}, as the schema says; got {type(value).__name__}."
            child = getattr(field, "child", None)
            if child is not None and isinstance(value, list):
                return next(filter(None, (_json_type_problem(child, item) for item in value)), None)
            if child is not None and isinstance(value, dict):
                return next(filter(None, (_json_type_problem(child, item) for item in value.values())), None)
            return None
    return None


def json_types_check(fields, data: dict) -> None:
    """A JSON body's values must have the schema's types: DRF would take 12 for a string, "12" for a
    number and "yes" for a boolean. (Form fields are all text, and DRF parses them.)"""
    problems = {}
    for name, field in fields.items():
        if not field.read_only and name in data:
            problem = _json_type_problem(field, data[name])
            if problem:
                problems[name] = [problem]
    if problems:
        raise serializers.ValidationError(problems)


def _too_long(field, value) -> str | None:
    limit = getattr(field, "max_length", None)
    if isinstance(field, serializers.CharField) and limit is not None and isinstance(value, str) and len(value) > limit:
        return f"must have at most {limit} characters, as the schema says; got {len(value)}."
    child = getattr(field, "child", None)
    if child is not None and isinstance(value, list):
        return next(filter(None, (_too_long(child, item) for item in value)), None)
    return None


def sent_lengths_check(fields, data) -> None:
    """A text field's `maxLength` holds for the value as sent: DRF checks it after trimming the
    surrounding spaces, so it would take 256 characters of which 2 are spaces for a 255 limit."""
    if not hasattr(data, "get"):
        return
    problems = {}
    for name, field in fields.items():
        if field.read_only or name not in data:
            continue
        value = (
            data.getlist(name)
            if hasattr(data, "getlist") and isinstance(field, serializers.ListField)
            else data.get(name)
        )
        problem = _too_long(field, value)
        if problem:
            problems[name] = [problem]
    if problems:
        raise serializers.ValidationError(problems)


# --------------------------------------------------------------------------- request helpers
def checked_upload(upload, field: str):
    """The uploaded file itself, for readers that stream it (a zip); 413 above `MAX_UPLOAD_MB`."""
    if upload.size > s.max_upload_bytes():
        raise PayloadTooLarge(
            f"{field} is {upload.size / 2**20:.1f} MB; files up to {settings.MAX_UPLOAD_MB} MB are accepted.",
            field=field,
        )
    return upload


def read_upload(upload, field: str) -> bytes:
    return checked_upload(upload, field).read()


def query_flag(request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("1", "true", "yes")


def api_datasets(user):
    """The user's datasets, without the hidden ones that back batch jobs."""
    return dataset_selectors.datasets_visible_to(user).filter(hidden=False)
