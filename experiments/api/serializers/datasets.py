"""Datasets, pairs and archive imports."""

from rest_framework import serializers

from experiments.api.serializers.common import ImageUpload, Upload, absolute_media_url, page_url
from experiments.models import Split


class DatasetInput(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class DatasetOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    pair_count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    url = serializers.SerializerMethodField()

    def get_url(self, dataset) -> str:
        return page_url(self.context["request"], "dataset-detail", pk=dataset.pk)


class PairInput(serializers.Serializer):
    image_a = ImageUpload(help_text='image A ("before")')
    image_b = ImageUpload(help_text='image B ("after")')
    label = ImageUpload(required=False, help_text="change mask in B's frame (255 or 1 = changed)")
    name = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=255,
        help_text="unique in the dataset; default: image B's file name",
    )
    category = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    split = serializers.ChoiceField(choices=Split.values, required=False, default="")


class PairOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    category = serializers.CharField()
    split = serializers.CharField()
    has_label = serializers.BooleanField()
    a_size = serializers.SerializerMethodField()
    b_size = serializers.SerializerMethodField()
    image_a_url = serializers.SerializerMethodField()
    image_b_url = serializers.SerializerMethodField()
    label_url = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_a_size(self, pair) -> list[int]:
        return [pair.a_width, pair.a_height]

    def get_b_size(self, pair) -> list[int]:
        return [pair.b_width, pair.b_height]

    def get_image_a_url(self, pair) -> str | None:
        return absolute_media_url(self.context["request"], pair.image_a)

    def get_image_b_url(self, pair) -> str | None:
        return absolute_media_url(self.context["request"], pair.image_b)

    def get_label_url(self, pair) -> str | None:
        return absolute_media_url(self.context["request"], pair.label)


class ImportInput(serializers.Serializer):
    file = Upload(
        help_text="a zip in a supported layout (LEVIR-CD with or without split folders or list/, "
        "DSIFN-CD, WHU-CD, CDD, S2Looking, loose <name>_A/_B/_label files)"
    )
    category = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class ImportReportOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    dry_run = serializers.BooleanField()
    imported = serializers.IntegerField()
    layout = serializers.CharField(
        help_text="the layout recognised: levir, levir-list, dsifn, whu, cdd, s2looking, flat"
    )
    pair_count = serializers.IntegerField(help_text="pairs checked (`pairs` lists the first 500)")
    splits = serializers.DictField(child=serializers.IntegerField(), help_text="pairs per split ('' = none)")
    pairs = serializers.ListField(child=serializers.DictField())
    problems = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField())
    leakage = serializers.DictField(
        required=False, help_text="after an import: the leakage audit's summary (see the dataset's `leakage/`)"
    )
