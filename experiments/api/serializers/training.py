"""Checkpoints and training jobs."""

from rest_framework import serializers

from experiments.api.serializers.common import InputSize, Upload, absolute_media_url
from inference.training_config import DEFAULTS, EPOCHS_RANGE, LOSSES


class CheckpointInput(serializers.Serializer):
    file = Upload(help_text=".pt (torch.save of {'state_dict', 'meta'}) or .safetensors")
    detector = serializers.CharField(required=False, max_length=100, help_text="must match meta['detector']")
    dataset = serializers.IntegerField(required=False, help_text="the dataset it was trained on (omit if none)")


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
    epochs = serializers.IntegerField(
        required=False, default=DEFAULTS.epochs, min_value=EPOCHS_RANGE[0], max_value=EPOCHS_RANGE[1]
    )
    loss = serializers.ChoiceField(choices=list(LOSSES), required=False, default=DEFAULTS.loss)
    size = InputSize(required=False, default=DEFAULTS.size)
    seed = serializers.IntegerField(required=False, default=DEFAULTS.seed, min_value=-(2**31), max_value=2**31 - 1)
    batch_size = serializers.IntegerField(required=False, default=DEFAULTS.batch_size, min_value=1, max_value=256)
    lr = serializers.FloatField(required=False, default=DEFAULTS.lr, min_value=1e-7, max_value=1.0)
    patience = serializers.IntegerField(required=False, default=DEFAULTS.patience, min_value=0, max_value=100)


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
