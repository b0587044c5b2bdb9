"""Shared pieces of the API's serializers: URLs, upload and rule-bound fields; auth and detectors."""

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from experiments.errors import ServiceError
from experiments.models import Split
from experiments.runs.validation import (
    INPUT_SIZE_MAX,
    INPUT_SIZE_MIN,
    THRESHOLD_MAX,
    THRESHOLD_MIN,
    check_input_size,
    check_threshold,
)

# --------------------------------------------------------------------------- helpers


def absolute_media_url(request, key: str) -> str | None:
    """An absolute URL of the API media endpoint for `key` (works with tokens and sessions)."""
    if not key:
        return None
    from django.urls import reverse

    return request.build_absolute_uri(reverse("api:media", kwargs={"key": key}))


def page_url(request, name: str, **kwargs) -> str:
    from django.urls import reverse

    return request.build_absolute_uri(reverse(f"api:{name}", kwargs=kwargs))


class Upload(serializers.FileField):
    """A file no larger than `MAX_UPLOAD_MB` (the view answers 413 beyond).

    An empty file matches the schema (any bytes do); what reads it refuses the content with 422.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("allow_empty_file", True)
        super().__init__(**kwargs)


class ImageUpload(Upload):
    """An image file (checked when it is read)."""


def _by_the_rule(check, value):
    """`value` as `experiments.runs.validation` accepts it: the services apply the same rule."""
    try:
        return check(value)
    except ServiceError as exc:
        raise serializers.ValidationError(exc.message) from None


@extend_schema_field(
    {
        "type": "number",
        "format": "double",
        "minimum": THRESHOLD_MIN,
        "maximum": THRESHOLD_MAX,
        "exclusiveMinimum": True,
        "exclusiveMaximum": True,
    }
)
class Threshold(serializers.FloatField):
    """The change-probability threshold, strictly between THRESHOLD_MIN and THRESHOLD_MAX."""

    def to_internal_value(self, data):
        return _by_the_rule(check_threshold, super().to_internal_value(data))


@extend_schema_field({"type": "integer", "minimum": INPUT_SIZE_MIN, "maximum": INPUT_SIZE_MAX})
class InputSize(serializers.IntegerField):
    """A square network input size in pixels, INPUT_SIZE_MIN to INPUT_SIZE_MAX."""

    def to_internal_value(self, data):
        return _by_the_rule(check_input_size, super().to_internal_value(data))


SPLIT_CHOICES = [s for s in Split.values if s]


# --------------------------------------------------------------------------- auth
class TokenInput(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class TokenOutput(serializers.Serializer):
    token = serializers.CharField()


# --------------------------------------------------------------------------- detectors
class DetectorOutput(serializers.Serializer):
    name = serializers.CharField()
    family = serializers.CharField()
    learned = serializers.BooleanField()
    description = serializers.CharField()
    queue = serializers.CharField()
    relative_cost = serializers.FloatField(help_text="rough CPU ms per 256x256 pair on the reference machine")
    params = serializers.IntegerField(
        allow_null=True, help_text="parameter count from the registry (0 without parameters; null if not declared)"
    )
    input_size = serializers.IntegerField(allow_null=True, help_text="default input size; null: runs at B's size")
    weights = serializers.CharField(
        help_text='what `weights="auto"` uses for you: "none" (classical), "checkpoint:<sha256>", or "untrained"'
    )
    weights_available = serializers.BooleanField(help_text="whether a run can use trained weights for you now")
    sync_diff = serializers.BooleanField(help_text="usable with POST /api/v1/diff/")
    available = serializers.BooleanField(
        help_text='whether a run with weights "auto" can load trained or ImageNet-pretrained weights for you now '
        "(classical detectors always can)"
    )
    unavailable_reason = serializers.CharField(help_text="why not, and the command that fixes it; empty when available")


def max_upload_bytes() -> int:
    return settings.MAX_UPLOAD_MB * 1024 * 1024
