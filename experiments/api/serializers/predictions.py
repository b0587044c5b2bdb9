"""Prediction sets: maps made elsewhere for every pair of a dataset, scored as `external:<name>`."""

from rest_framework import serializers

from experiments.api.serializers.common import Upload
from experiments.models import PredictionSet


class PredictionSetInput(serializers.Serializer):
    archive = Upload(
        help_text="a zip with one file per pair of the dataset: <pair name>.png or .npy, or "
        "<split>/<pair name>.<ext> (required when the name is in more than one split)"
    )
    name = serializers.CharField(
        max_length=90, help_text="letters, digits, '.', '-' and '_'; the detector is called external:<name>"
    )
    kind = serializers.ChoiceField(
        choices=PredictionSet.Kind.values,
        help_text="mask: nonzero = changed; probability: 8-bit PNG /255, 16-bit PNG /65535 or float32 .npy in [0, 1]",
    )


class PredictionSetOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    detector = serializers.CharField(source="detector_name", help_text="the name experiments choose it by")
    kind = serializers.CharField()
    dataset = serializers.IntegerField(source="dataset_id")
    archive_sha256 = serializers.CharField()
    pair_count = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_pair_count(self, predictions) -> int:
        count = getattr(predictions, "pair_count", None)
        return count if count is not None else predictions.predictions.count()


class PredictionsReportOutput(serializers.Serializer):
    missing = serializers.ListField(child=serializers.CharField(), help_text="pairs without a file")
    unknown = serializers.ListField(child=serializers.CharField(), help_text="files that match no pair")
    ambiguous = serializers.ListField(child=serializers.CharField(), help_text="names in several splits")
    problems = serializers.ListField(child=serializers.CharField(), help_text="unreadable or mis-sized maps")
