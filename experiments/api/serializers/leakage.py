"""The leakage audit's answers: a dataset's summary and findings, a run's scored pairs seen in training."""

from rest_framework import serializers


class LeakageSummaryOutput(serializers.Serializer):
    audited_at = serializers.DateTimeField(required=False, help_text="absent: never audited")
    pairs = serializers.IntegerField(required=False, help_text="pairs the audit read")
    findings = serializers.IntegerField(required=False)
    by_kind = serializers.DictField(child=serializers.IntegerField(), required=False, help_text="exact, near, tile")
    threshold = serializers.IntegerField(required=False, help_text="near-duplicate threshold, bits of 64")
    hash_bits = serializers.IntegerField(required=False)
    seconds = serializers.FloatField(required=False, help_text="how long the audit took")
    stale = serializers.BooleanField(required=False, help_text="pairs were added or removed since")


class LeakagePairOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    split = serializers.CharField()


class LeakageFindingOutput(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField(help_text="exact, near (near-duplicate) or tile (overlapping tiles of one source)")
    pair = LeakagePairOutput()
    other = LeakagePairOutput()
    images = serializers.CharField(help_text="which images matched: \"A~B\" = pair's A is other's B; empty for tiles")
    distance = serializers.IntegerField(help_text="Hamming distance of the perceptual hashes (0: exact or tile)")
    detail = serializers.CharField(help_text="every image match, or the tiles' overlap")


class LeakagePageOutput(serializers.Serializer):
    summary = LeakageSummaryOutput()
    next = serializers.URLField(allow_null=True)
    previous = serializers.URLField(allow_null=True)
    results = LeakageFindingOutput(many=True)


class RunLeakageRowOutput(serializers.Serializer):
    pair = serializers.IntegerField(help_text="the scored pair")
    pair_name = serializers.CharField()
    split = serializers.CharField()
    trained_pair = serializers.IntegerField(help_text="the pair a checkpoint trained or validated on")
    trained_pair_name = serializers.CharField()
    trained_split = serializers.CharField()
    detectors = serializers.ListField(child=serializers.CharField(), help_text="whose weights trained on it")
    kind = serializers.CharField(help_text="exact or near")
    distance = serializers.IntegerField()
    images = serializers.CharField(help_text="\"A~B\": the scored pair's A matched the training pair's B")


class RunLeakageOutput(serializers.Serializer):
    count = serializers.IntegerField()
    results = RunLeakageRowOutput(many=True)
