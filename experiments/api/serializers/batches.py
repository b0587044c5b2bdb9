"""Batch jobs and quick diffs."""

from rest_framework import serializers

from experiments.api.errors import ApiError
from experiments.api.serializers.common import ImageUpload, Threshold, Upload
from experiments.models import Scaling
from experiments.runs.validation import scaling_help


class BatchInput(serializers.Serializer):
    image_a = serializers.ListField(
        child=Upload(),
        required=False,
        default=list,
        help_text="repeat once per pair; matched to image_b by file name",
    )
    image_b = serializers.ListField(child=Upload(), required=False, default=list)
    label = serializers.ListField(
        child=Upload(),
        required=False,
        default=list,
        help_text="optional change masks, matched by file name",
    )
    archive = Upload(required=False, help_text="instead of loose files: a LEVIR-CD layout zip")
    detectors = serializers.ListField(
        child=serializers.CharField(max_length=100),
        min_length=1,
        max_length=20,
        help_text="repeat the field, or one comma-separated value",
    )
    threshold = Threshold(required=False, default=0.5)
    align = serializers.BooleanField(required=False, default=False)
    scaling = serializers.ChoiceField(
        choices=Scaling.values,
        required=False,
        default=Scaling.AUTO,
        help_text="auto (default: tile when B is more than twice the input size), resize or tile",
        error_messages={"invalid_choice": 'Unknown scaling "{input}": ' + scaling_help() + "."},
    )

    def validate_detectors(self, value):
        names = [name.strip() for item in value for name in item.split(",") if name.strip()]
        if not names:
            raise ApiError("Choose at least one detector.", status_code=422, field="detectors")
        return names

    def validate(self, attrs):
        # Every field is optional in the schema; which combination is needed is a rule (422).
        loose = attrs["image_a"] or attrs["image_b"] or attrs["label"]
        if attrs.get("archive") and loose:
            raise ApiError("Send either an archive or image_a/image_b files.", status_code=422, field="archive")
        if not attrs.get("archive") and not (attrs["image_a"] and attrs["image_b"]):
            raise ApiError("Send image_a and image_b files (or one archive).", status_code=422, field="image_a")
        return attrs


class BatchOutput(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField(
        help_text="creating, queued, running, succeeded, partial (some detectors failed), failed or cancelled"
    )
    done = serializers.IntegerField()
    total = serializers.IntegerField()
    error = serializers.CharField()
    detectors = serializers.ListField(child=serializers.CharField())
    run = serializers.IntegerField(allow_null=True)
    idempotency_key = serializers.CharField()
    created_at = serializers.DateTimeField()
    urls = serializers.DictField(child=serializers.CharField())


class DiffInput(serializers.Serializer):
    image_a = ImageUpload()
    image_b = ImageUpload()
    label = ImageUpload(required=False, help_text="optional change mask in B's frame: metrics are added")
    detector = serializers.CharField(max_length=100)
    threshold = Threshold(required=False, default=0.5)


class DiffOutput(serializers.Serializer):
    detector = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    threshold = serializers.FloatField()
    changed_fraction = serializers.FloatField()
    heatmap_png = serializers.CharField(help_text="base64 PNG, B's size")
    mask_png = serializers.CharField(help_text="base64 PNG, 255 = changed")
    metrics = serializers.DictField(allow_null=True)
