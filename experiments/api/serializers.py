"""Input validation and output shapes of the API. No queries, no writes: views call selectors/services."""

from django.conf import settings
from rest_framework import serializers

from experiments import exports
from experiments.models import Split
from experiments.training.services import TRAINING_LOSSES

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


class ImageUpload(serializers.FileField):
    """A file no larger than `MAX_UPLOAD_MB` (the view answers 413 beyond)."""


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
    params = serializers.IntegerField(allow_null=True, help_text="parameter count (static table; 0 for classical)")
    input_size = serializers.IntegerField(allow_null=True)
    weights = serializers.CharField(
        help_text='what `weights="auto"` uses for you: "none" (classical), "checkpoint:<sha256>", or "untrained"'
    )
    weights_available = serializers.BooleanField(help_text="whether a run can use trained weights for you now")
    sync_diff = serializers.BooleanField(help_text="usable with POST /api/v1/diff/")


# --------------------------------------------------------------------------- datasets and pairs
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
    file = serializers.FileField(help_text="a zip in the LEVIR-CD layout: A/, B/, optional label/ and list/")
    category = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)


class ImportReportOutput(serializers.Serializer):
    ok = serializers.BooleanField()
    dry_run = serializers.BooleanField()
    imported = serializers.IntegerField()
    pairs = serializers.ListField(child=serializers.DictField())
    problems = serializers.ListField(child=serializers.CharField())
    warnings = serializers.ListField(child=serializers.CharField())


# --------------------------------------------------------------------------- experiments and runs
class ExperimentInput(serializers.Serializer):
    dataset = serializers.IntegerField()
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    detectors = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=20)
    align = serializers.BooleanField(required=False, default=False)
    threshold = serializers.FloatField(required=False, default=0.5)
    input_size = serializers.IntegerField(required=False, default=256)
    seed = serializers.IntegerField(required=False, default=0, min_value=-(2**31), max_value=2**31 - 1)
    baseline_detector = serializers.CharField(required=False, allow_blank=True, default="", max_length=100)
    detector_weights = serializers.DictField(
        child=serializers.CharField(max_length=100),
        required=False,
        default=dict,
        help_text='per detector: "auto", "random" or "checkpoint:<sha256>"',
    )


class ExperimentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    dataset = serializers.IntegerField(source="dataset_id")
    detectors = serializers.ListField(child=serializers.CharField())
    align = serializers.BooleanField()
    threshold = serializers.FloatField()
    input_size = serializers.IntegerField()
    seed = serializers.IntegerField()
    baseline_detector = serializers.CharField()
    detector_weights = serializers.DictField(child=serializers.CharField())
    created_at = serializers.DateTimeField()


class RunOutput(serializers.Serializer):
    id = serializers.IntegerField()
    experiment = serializers.IntegerField(source="experiment_id")
    state = serializers.CharField()
    progress_done = serializers.IntegerField()
    progress_total = serializers.IntegerField()
    progress = serializers.DictField()
    cancel_requested = serializers.BooleanField()
    error = serializers.CharField()
    cloned_from = serializers.IntegerField(source="cloned_from_id", allow_null=True)
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_s = serializers.FloatField(allow_null=True)
    urls = serializers.SerializerMethodField()

    def get_urls(self, run) -> dict[str, str]:
        request = self.context["request"]
        return {
            "self": page_url(request, "run-detail", pk=run.pk),
            "leaderboard": page_url(request, "run-leaderboard", pk=run.pk),
            "results": page_url(request, "run-results", pk=run.pk),
            "ws_ticket": page_url(request, "run-ws-ticket", pk=run.pk),
        }


class WsTicketOutput(serializers.Serializer):
    ticket = serializers.CharField()
    url = serializers.CharField(help_text="ws:// or wss:// URL with the ticket; open it within expires_in seconds")
    expires_in = serializers.IntegerField()


class LeaderboardOutput(serializers.Serializer):
    run = serializers.IntegerField()
    state = serializers.CharField()
    experiment = serializers.IntegerField()
    dataset = serializers.IntegerField()
    settings = serializers.DictField()
    rows = serializers.ListField(child=serializers.DictField(), help_text="one ranked row per detector")
    leaderboard = serializers.DictField(help_text="the full stored leaderboard (pooled, per-pair means, CIs)")


class ResultOutput(serializers.Serializer):
    id = serializers.IntegerField()
    pair = serializers.SerializerMethodField()
    detector = serializers.CharField()
    iou = serializers.FloatField(allow_null=True)
    f1 = serializers.FloatField(allow_null=True)
    latency_ms = serializers.FloatField(allow_null=True)
    peak_memory_mb = serializers.FloatField(allow_null=True)
    weights = serializers.CharField()
    from_cache = serializers.BooleanField()
    metrics = serializers.SerializerMethodField()
    heatmap_url = serializers.SerializerMethodField()
    mask_url = serializers.SerializerMethodField()
    error_map_url = serializers.SerializerMethodField()

    def get_pair(self, result) -> dict:
        pair = result.pair
        return {"id": pair.pk, "name": pair.name, "category": pair.category, "split": pair.split}

    def get_metrics(self, result) -> dict:
        return exports.compact_metrics(result.metrics)

    def get_heatmap_url(self, result) -> str | None:
        return absolute_media_url(self.context["request"], result.heatmap_key)

    def get_mask_url(self, result) -> str | None:
        return absolute_media_url(self.context["request"], result.mask_key)

    def get_error_map_url(self, result) -> str | None:
        return absolute_media_url(self.context["request"], result.error_map_key)


class ResultFilterInput(serializers.Serializer):
    detector = serializers.CharField(required=False, max_length=100)
    category = serializers.CharField(required=False, max_length=100)
    ordering = serializers.ChoiceField(
        choices=sorted(
            ["iou", "-iou", "f1", "-f1", "latency_ms", "-latency_ms", "pair__name", "-pair__name", "detector"]
        ),
        required=False,
    )
    iou_min = serializers.FloatField(required=False)
    iou_max = serializers.FloatField(required=False)
    f1_min = serializers.FloatField(required=False)
    f1_max = serializers.FloatField(required=False)
    latency_ms_min = serializers.FloatField(required=False)
    latency_ms_max = serializers.FloatField(required=False)
    peak_memory_mb_min = serializers.FloatField(required=False)
    peak_memory_mb_max = serializers.FloatField(required=False)

    def metric_ranges(self) -> dict:
        data = self.validated_data
        ranges = {}
        for name in ("iou", "f1", "latency_ms", "peak_memory_mb"):
            low, high = data.get(f"{name}_min"), data.get(f"{name}_max")
            if low is not None or high is not None:
                ranges[name] = (low, high)
        return ranges


# --------------------------------------------------------------------------- checkpoints and training
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
    size = serializers.IntegerField(required=False, default=256)
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


# --------------------------------------------------------------------------- batches and quick diff
class BatchInput(serializers.Serializer):
    image_a = serializers.ListField(
        child=serializers.FileField(),
        required=False,
        default=list,
        help_text="repeat once per pair; matched to image_b by file name",
    )
    image_b = serializers.ListField(child=serializers.FileField(), required=False, default=list)
    label = serializers.ListField(
        child=serializers.FileField(),
        required=False,
        default=list,
        help_text="optional change masks, matched by file name",
    )
    archive = serializers.FileField(required=False, help_text="instead of loose files: a LEVIR-CD layout zip")
    detectors = serializers.ListField(
        child=serializers.CharField(max_length=100),
        min_length=1,
        max_length=20,
        help_text="repeat the field, or one comma-separated value",
    )
    threshold = serializers.FloatField(required=False, default=0.5, min_value=0.0, max_value=1.0)
    align = serializers.BooleanField(required=False, default=False)

    def validate_detectors(self, value):
        names = [name.strip() for item in value for name in item.split(",") if name.strip()]
        if not names:
            raise serializers.ValidationError("Choose at least one detector.")
        return names

    def validate(self, attrs):
        loose = attrs["image_a"] or attrs["image_b"] or attrs["label"]
        if attrs.get("archive") and loose:
            raise serializers.ValidationError({"archive": ["Send either an archive or image_a/image_b files."]})
        if not attrs.get("archive") and not (attrs["image_a"] and attrs["image_b"]):
            raise serializers.ValidationError({"image_a": ["Send image_a and image_b files (or one archive)."]})
        return attrs


class BatchOutput(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField(help_text="creating, queued, running, succeeded, failed or cancelled")
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
    threshold = serializers.FloatField(required=False, default=0.5, min_value=0.0, max_value=1.0)


class DiffOutput(serializers.Serializer):
    detector = serializers.CharField()
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    threshold = serializers.FloatField()
    changed_fraction = serializers.FloatField()
    heatmap_png = serializers.CharField(help_text="base64 PNG, B's size")
    mask_png = serializers.CharField(help_text="base64 PNG, 255 = changed")
    metrics = serializers.DictField(allow_null=True)


def max_upload_bytes() -> int:
    return settings.MAX_UPLOAD_MB * 1024 * 1024
