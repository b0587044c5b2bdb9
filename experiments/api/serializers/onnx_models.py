"""Uploaded ONNX models: the upload's contract fields and a model's state."""

from rest_framework import serializers

from experiments.api.serializers.common import Upload
from experiments.models import UploadedModel


class UploadedModelInput(serializers.Serializer):
    file = Upload(help_text="the .onnx file (an ONNX protobuf; a PyTorch .pt/.pth file is refused)")
    name = serializers.CharField(max_length=90, help_text="the model's name; it becomes detector onnx:<name>")
    input_size = serializers.CharField(
        max_length=8, help_text="square input in pixels (e.g. 256), or 'any' for a fully convolutional model"
    )
    mean = serializers.CharField(max_length=200, help_text="three comma-separated numbers, RGB scaled to [0, 1]")
    std = serializers.CharField(max_length=200, help_text="three comma-separated positive numbers")
    inputs = serializers.ChoiceField(choices=UploadedModel.Inputs.choices)
    output = serializers.ChoiceField(
        choices=UploadedModel.Output.choices, help_text="1xHxW or 1x1xHxW; logits get a sigmoid"
    )


class UploadedModelOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    detector = serializers.CharField(source="detector_name", help_text="its name in experiments once ready")
    state = serializers.ChoiceField(choices=UploadedModel.State.choices)
    reason = serializers.CharField(help_text="why it was rejected (empty otherwise)")
    sha256 = serializers.CharField(help_text="of the file: the provenance of every result it computes")
    size_bytes = serializers.IntegerField()
    input_size = serializers.IntegerField(allow_null=True, help_text="null: any size (run at B's size)")
    mean = serializers.ListField(child=serializers.FloatField())
    std = serializers.ListField(child=serializers.FloatField())
    inputs = serializers.CharField()
    output = serializers.CharField()
    probe = serializers.DictField(help_text="what validation measured: opset, input shapes, probe time, parameters")
    created_at = serializers.DateTimeField()
    validated_at = serializers.DateTimeField(allow_null=True)
