"""Checkpoints and training jobs."""

from rest_framework import serializers

from experiments.api.serializers.common import InputSize, absolute_media_url
from experiments.training.services import TRAINING_LOSSES


class CheckpointInput(serializers.Serializer):
    file = serializers.FileField(help_text=".pt (torch.save of {'state_dict', 'meta'}) or .safetensors")
    detector = serializers.CharField(required=False, max_length=100, help_text="must match meta['detector']")
    dataset = serializers.IntegerField(required=False, allow_null=True)


class CheckpointOutput(serializers.Serializer):
    id = serializers.IntegerField()
    detector = serializers.CharField()
    sha256 = serializers.CharField()
    provenance = serializers.CharField()
    epochs = serializers.IntegerField()
    val_metrics = serializers.DictField()
    is_public = serializers.BooleanField()
    mine = serializers.SerializerMethodField()
    dataset = serializers.IntegerField(source="dataset_id", allow_null=True)
    file_url = serializers.SerializerMethodField()
    created_at = serializers.DateTimeField()

    def get_mine(self, checkpoint) -> bool:
        return checkpoint.owner_id == self.context["request"].user.pk

    def get_file_url(self, checkpoint) -> str | None:
        return absolute_media_url(self.context["request"], checkpoint.file_key)


class TrainingInput(serializers.Serializer):
    detector = serializers.CharField(max_length=100)
    dataset = serializers.IntegerField()
    epochs = serializers.IntegerField(required=False, default=10)
    loss = serializers.ChoiceField(choices=list(TRAINING_LOSSES), required=False, default="bce-dice")
    size = InputSize(required=False, default=256)
    seed = serializers.IntegerField(required=False, default=0, min_value=-(2**31), max_value=2**31 - 1)
    batch_size = serializers.IntegerField(required=False, default=8, min_value=1, max_value=256)
    lr = serializers.FloatField(required=False, default=1e-3, min_value=1e-7, max_value=1.0)
    patience = serializers.IntegerField(required=False, default=3, min_value=0, max_value=100)


class TrainingOutput(serializers.Serializer):
    id = serializers.IntegerField()
    detector = serializers.CharField()
    dataset = serializers.IntegerField(source="dataset_id")
    config = serializers.DictField()
    state = serializers.CharField()
    progress = serializers.DictField()
    cancel_requested = serializers.BooleanField()
    error = serializers.CharField()
    checkpoint = serializers.CharField(source="checkpoint.provenance", allow_null=True, default=None)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
