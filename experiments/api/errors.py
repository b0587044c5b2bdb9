"""One JSON shape for every API error, and the DRF exception handler that produces it.

    {"error": {"status": 400, "code": "invalid", "message": "...", "fields": {"image_a": ["..."]}}}

`fields` is present when the problem is tied to named inputs; other keys (`report` for an import
validation report) are added by the view that knows them.
"""

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404
from rest_framework import exceptions, serializers, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import set_rollback

from experiments.errors import ServiceError

CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "throttled",
}


class ApiError(exceptions.APIException):
    """An error with a chosen status, message, field and extra keys (e.g. an import report)."""

    def __init__(self, message: str, *, status_code: int = 400, field: str | None = None, code=None, **extra):
        super().__init__(detail=message)
        self.status_code = status_code
        self.message = message
        self.field = field
        self.code = code or CODES.get(status_code, "error")
        self.extra = extra


class PayloadTooLarge(ApiError):
    def __init__(self, message: str | None = None, *, field: str | None = None):
        message = message or f"The upload is larger than {settings.MAX_UPLOAD_MB} MB; send smaller files."
        super().__init__(message, status_code=413, field=field)


def error_body(status_code: int, message: str, *, code: str | None = None, fields=None, **extra) -> dict:
    body = {"status": status_code, "code": code or CODES.get(status_code, "error"), "message": message}
    if fields:
        body["fields"] = fields
    body.update(extra)
    return {"error": body}


def error_response(status_code: int, message: str, **kwargs) -> Response:
    return Response(error_body(status_code, message, **kwargs), status=status_code)


def from_service_error(exc: ServiceError, *, status_code: int | None = None, **extra) -> ApiError:
    """A service's refusal as an API error.

    400 means the request does not match the schema (the serializers say so); a request that
    matches it but breaks a rule of the platform (a name already taken, a detector without
    weights, an archive that is not a zip) answers 422, as the schema declares.
    """
    status_code = status_code or (422 if exc.status == 400 else exc.status)
    return ApiError(exc.message, status_code=status_code, field=exc.field, **extra)


def _flatten(detail) -> list[str]:
    if isinstance(detail, dict):
        return [f"{key}: {msg}" for key, value in detail.items() for msg in _flatten(value)]
    if isinstance(detail, list | tuple):
        return [msg for item in detail for msg in _flatten(item)]
    return [str(detail)]


def _validation_body(detail) -> tuple[str, dict]:
    if not isinstance(detail, dict):
        messages = _flatten(detail)
        return (" ".join(messages) or "The request is invalid."), {}
    fields = {key: _flatten(value) for key, value in detail.items() if key != "non_field_errors"}
    general = _flatten(detail.get("non_field_errors", []))
    summary = general or [f"{key}: {messages[0]}" for key, messages in fields.items() if messages]
    return " ".join(summary) or "The request is invalid.", fields


def exception_handler(exc, context):
    """DRF's `EXCEPTION_HANDLER`: every error in the shape above; anything unknown stays a 500."""
    headers = {}
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, ServiceError):
        report = getattr(exc, "report", None)  # an import validation report travels with the error
        exc = from_service_error(exc, **({"report": report} if report is not None else {}))
    if not isinstance(exc, exceptions.APIException):
        return None
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    set_rollback()
    _render_as_json(context.get("request"))
    if isinstance(exc, ApiError):
        fields = {exc.field: [exc.message]} if exc.field else None
        body = error_body(exc.status_code, exc.message, code=exc.code, fields=fields, **exc.extra)
    elif isinstance(exc, exceptions.ValidationError):
        message, fields = _validation_body(exc.detail)
        body = error_body(status.HTTP_400_BAD_REQUEST, message, fields=fields)
    else:
        code = exc.get_codes() if isinstance(exc.get_codes(), str) else None
        body = error_body(exc.status_code, " ".join(_flatten(exc.detail)), code=code)
    return Response(body, status=exc.status_code, headers=headers)


def _render_as_json(request) -> None:
    """Errors are JSON even on views that also render CSV or files (`?format=csv`, archives)."""
    renderer = getattr(request, "accepted_renderer", None)
    if renderer is not None and renderer.format != "json":
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), JSONRenderer.media_type


# --------------------------------------------------------------------------- schema
class ErrorDetailSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class ImportReportSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    pairs = serializers.ListField(child=serializers.DictField())
    problems = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField())


class ReportErrorDetailSerializer(ErrorDetailSerializer):
    report = ImportReportSerializer()


class ReportErrorSerializer(serializers.Serializer):
    error = ReportErrorDetailSerializer()


class MaybeReportErrorDetailSerializer(ErrorDetailSerializer):
    report = ImportReportSerializer(required=False, help_text="present when the files were checked")


class MaybeReportErrorSerializer(serializers.Serializer):
    """A 422 that carries the files' report when the files were read (other rules answer without one)."""

    error = MaybeReportErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "The input does not match this schema (a field or query parameter it does not declare included); "
    "`fields` names what to fix.",
    401: "No or bad credentials: log in or send `Authorization: Token <key>`.",
    403: "Authenticated, but not allowed (e.g. a missing CSRF token on a session request).",
    404: "No such object, or it belongs to someone else.",
    409: "The object's state does not allow this now (e.g. the run is still active).",
    413: "An upload or image is larger than the limit, or would take you over your storage quota.",
    415: "Wrong content type; send multipart/form-data or JSON as documented.",
    422: "The input matches the schema but a rule refuses it (e.g. a name already taken, an unreadable "
    "archive); the message and `fields` say what to fix.",
    429: "Too many requests; retry after the `Retry-After` seconds.",
    503: "The platform cannot do this right now (e.g. the sandbox that checks uploads could not start); try again.",
}


def error_responses(*codes: int) -> dict:
    """`extend_schema(responses=...)` entries for the given error codes (401 and 429 always)."""
    from drf_spectacular.utils import OpenApiResponse

    wanted = sorted({401, 429, *codes})
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in wanted}
