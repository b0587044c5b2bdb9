"""Claimed figures (`experiments.claims`): what a source claims for a checkpoint, model or prediction set."""

from rest_framework import serializers

from experiments.models import ClaimedMetric


class ClaimInput(serializers.Serializer):
    source = serializers.CharField(max_length=300, help_text="where the figure is claimed (paper, thesis, model card)")
    dataset = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    metric = serializers.ChoiceField(choices=ClaimedMetric.choices)
    value = serializers.FloatField(min_value=0, max_value=1e9, help_text="IoU/F1/precision/recall in [0, 1]")
    hardware = serializers.CharField(max_length=200, required=False, default="", allow_blank=True)
    input_size = serializers.IntegerField(min_value=1, max_value=16384, required=False, allow_null=True, default=None)

    def validate(self, data):
        if data["metric"] in ("iou", "f1", "precision", "recall") and data["value"] > 1:
            raise serializers.ValidationError({"value": f"{data['metric']} is a fraction in [0, 1]."})
        return data


class ClaimOutput(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.CharField()
    dataset = serializers.CharField()
    metric = serializers.CharField()
    value = serializers.FloatField()
    hardware = serializers.CharField()
    input_size = serializers.IntegerField(allow_null=True)
    created_at = serializers.DateTimeField()
