"""Experiments, runs, WebSocket tickets, leaderboards and per-pair results."""

from rest_framework import serializers

from experiments.api.serializers.common import SPLIT_CHOICES, InputSize, Threshold, absolute_media_url, page_url
from experiments.models import Scaling, ThresholdRule
from experiments.reporting import results
from experiments.runs.protocol import protocol_of
from experiments.runs.selectors import FILTERABLE_METRICS, RESULT_ORDERINGS
from experiments.runs.threshold_rules import RULES_HELP
from experiments.runs.validation import scaling_help


class ExperimentInput(serializers.Serializer):
    dataset = serializers.IntegerField()
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    detectors = serializers.ListField(child=serializers.CharField(max_length=100), min_length=1, max_length=20)
    align = serializers.BooleanField(required=False, default=False)
    threshold = Threshold(required=False, default=0.5, help_text="the threshold of every detector under the fixed rule")
    threshold_rule = serializers.ChoiceField(
        choices=ThresholdRule.values,
        required=False,
        default=ThresholdRule.FIXED,
        help_text="fixed (default: `threshold` for every detector) or validation (each detector's F1-optimal "
        "threshold on the dataset's val split, frozen and applied to the scored splits)",
        error_messages={"invalid_choice": 'Unknown threshold rule "{input}": ' + RULES_HELP + "."},
    )
    validation_holdout = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        help_text="validation rule on a dataset without a val split: the share (0-0.5] of labelled train pairs "
        "held out (seeded by `seed`) to choose the thresholds on",
    )
    input_size = InputSize(
        required=False,
        allow_null=True,
        default=None,
        help_text="an override for every learned detector; null (default): each detector at its own size "
        "(its checkpoint's training size, else the registry's default)",
    )
    scaling = serializers.ChoiceField(
        choices=Scaling.values,
        required=False,
        default=Scaling.AUTO,
        help_text="how learned detectors see pairs larger than their input size: resize (the whole pair at the "
        "input size), tile (sliding windows at the input size, 25% overlap, blended) or auto (default: tile when "
        "B's longer side is more than twice the input size, else resize)",
        error_messages={"invalid_choice": 'Unknown scaling "{input}": ' + scaling_help() + "."},
    )
    splits = serializers.ListField(
        child=serializers.ChoiceField(choices=SPLIT_CHOICES),
        required=False,
        allow_null=True,
        default=None,
        max_length=3,
        help_text='the dataset splits to score, e.g. ["test"]; [] scores every pair; null (default): '
        '["test"] when the dataset has test pairs, else every pair',
    )
    seed = serializers.IntegerField(required=False, default=0, min_value=-(2**31), max_value=2**31 - 1)
    baseline_detector = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=100,
        help_text="one of `detectors`; blank (default): the classical detector with the best pooled F1 under the "
        "threshold rule, chosen when each run ends (else the first detector)",
    )
    detector_weights = serializers.DictField(
        child=serializers.CharField(max_length=100),
        required=False,
        default=dict,
        help_text='per detector: "auto", "random" or "checkpoint:<sha256>"',
    )
    webhook_url = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=500,
        help_text="optional http(s) URL POSTed a signed `run.finished` event when each run ends (public "
        "addresses only; see the webhook secret at /api/v1/webhooks/secret/)",
    )


class ExperimentOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    dataset = serializers.IntegerField(source="dataset_id")
    detectors = serializers.ListField(child=serializers.CharField())
    align = serializers.BooleanField()
    threshold = serializers.FloatField()
    threshold_rule = serializers.CharField(help_text="fixed or validation")
    validation_holdout = serializers.FloatField(allow_null=True)
    input_size = serializers.IntegerField(allow_null=True, help_text="the override, or null: each detector's own")
    scaling = serializers.ChoiceField(choices=Scaling.values, help_text="auto, resize or tile (see the input)")
    splits = serializers.ListField(child=serializers.CharField(), help_text="scored splits; [] = every pair")
    seed = serializers.IntegerField()
    baseline_detector = serializers.CharField()
    detector_weights = serializers.DictField(child=serializers.CharField())
    webhook_url = serializers.CharField(help_text="where run.finished events go; empty: none")
    created_at = serializers.DateTimeField()


class RunOutput(serializers.Serializer):
    id = serializers.IntegerField()
    experiment = serializers.IntegerField(source="experiment_id")
    state = serializers.CharField(
        help_text="queued, running, succeeded, partial (some detectors finished, others failed: "
        "`progress.detectors.<name>.failed` and `error` say why), failed or cancelled"
    )
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
    protocol = serializers.SerializerMethodField()
    urls = serializers.SerializerMethodField()

    def get_protocol(self, run) -> dict:
        """What the run's figures are measured under (`experiments.runs.protocol`)."""
        return protocol_of(run)

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
    protocol = serializers.DictField(
        help_text="what the figures were measured under: scored splits, threshold rule, per detector its threshold "
        "and source, input size, scaling and weights; alignment"
    )
    rows = serializers.ListField(
        child=serializers.DictField(),
        help_text="one ranked row per detector; `threshold` and `threshold_source` (fixed, validation (N pairs)) "
        "say what its masks were cut at",
    )
    leaderboard = serializers.DictField(
        help_text="the full stored leaderboard (pooled, per-pair means, CIs; `ranking`: the paired bootstrap tests "
        "behind the rank groups)"
    )


class ThesisRowOutput(serializers.Serializer):
    detector = serializers.CharField()
    iou = serializers.FloatField(allow_null=True, help_text="pooled over the scored pairs")
    time_ms = serializers.FloatField(allow_null=True, help_text="median per pair at batch 1 on this run's worker")
    claimed_iou = serializers.FloatField(allow_null=True, help_text="claimed IoU (a claim's), if any")
    iou_difference = serializers.FloatField(allow_null=True, help_text="measured - claimed")
    claimed_time_ms = serializers.FloatField(allow_null=True)
    time_difference = serializers.FloatField(allow_null=True, help_text="measured - claimed (ms)")
    memory_mib = serializers.FloatField(
        allow_null=True, help_text="model memory: weights + one batch-1 prediction, in a process of its own"
    )
    claimed_memory_mb = serializers.FloatField(allow_null=True)
    memory_difference = serializers.FloatField(allow_null=True, help_text="measured MiB - claimed MB")
    worker_peak_rss_mib = serializers.FloatField(
        allow_null=True, help_text="the worker process's peak during inference"
    )
    claim_source = serializers.CharField(help_text="who claims the figures; empty when nothing is claimed")
    differs = serializers.CharField(help_text="what differs between the claim's measurement and the run's")
    claims = serializers.ListField(child=serializers.DictField(), help_text="every claim beside its measured figure")
    weights_source = serializers.CharField()
    measured_here = serializers.BooleanField(help_text="false for uploaded predictions: no time or memory")
    failed = serializers.CharField(allow_null=True)


class ThesisTableOutput(serializers.Serializer):
    run = serializers.IntegerField()
    labels = serializers.DictField(child=serializers.CharField(), help_text="what each column is")
    rows = ThesisRowOutput(many=True)


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
        return results.compact_metrics(result.metrics)

    def get_heatmap_url(self, result) -> str | None:
        return absolute_media_url(self.context["request"], result.heatmap_key)

    def get_mask_url(self, result) -> str | None:
        return absolute_media_url(self.context["request"], result.mask_key)

    def get_error_map_url(self, result) -> str | None:
        return absolute_media_url(self.context["request"], result.error_map_key)


class ResultFilterInput(serializers.Serializer):
    detector = serializers.CharField(required=False, max_length=100)
    category = serializers.CharField(required=False, max_length=100)
    ordering = serializers.ChoiceField(choices=sorted(RESULT_ORDERINGS), required=False)

    def get_fields(self):
        """`<metric>_min` and `<metric>_max` for each of `FILTERABLE_METRICS`."""
        fields = super().get_fields()
        for name in sorted(FILTERABLE_METRICS):
            fields[f"{name}_min"] = serializers.FloatField(required=False)
            fields[f"{name}_max"] = serializers.FloatField(required=False)
        return fields

    def metric_ranges(self) -> dict:
        data = self.validated_data
        ranges = {}
        for name in sorted(FILTERABLE_METRICS):
            low, high = data.get(f"{name}_min"), data.get(f"{name}_max")
            if low is not None or high is not None:
                ranges[name] = (low, high)
        return ranges
