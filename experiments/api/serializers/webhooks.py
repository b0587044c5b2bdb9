from rest_framework import serializers


class WebhookSecretOutput(serializers.Serializer):
    secret = serializers.CharField(help_text="HMAC-SHA256 key of your deliveries' signatures")
    created_at = serializers.DateTimeField()


class WebhookDeliveryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    run = serializers.IntegerField(source="run_id", allow_null=True)
    url = serializers.CharField()
    event = serializers.CharField()
    state = serializers.CharField(help_text="pending, delivered or failed")
    attempts = serializers.IntegerField()
    last_status = serializers.IntegerField(allow_null=True, help_text="the receiver's last HTTP status")
    last_error = serializers.CharField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    created_at = serializers.DateTimeField()
    delivered_at = serializers.DateTimeField(allow_null=True)
