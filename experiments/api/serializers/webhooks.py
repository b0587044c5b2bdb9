from rest_framework import serializers


class WebhookSecretOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="HMAC-SHA256 key of your deliveries' signatures")
    created_at = serializers.DateTimeField()


class WebhookDeliveryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    run = serializers.IntegerField(source="run_id", allow_null=True)
    url = serializers.CharField()
    event = serializers.CharField()
    state = serializers.CharField(
        help_text="pending (an attempt is queued), delivered, refused (not a public address) or failed (after `attempts`)"
    )
    attempts = serializers.IntegerField()
    last_error = serializers.CharField(
        help_text='"refused: not a public address", "failed after N attempts" or "attempt N of M failed; retrying"; '
        "never the receiver's answer or a network error"
    )
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
