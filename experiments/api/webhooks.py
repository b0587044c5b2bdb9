"""Webhooks: your signing secret (shown, rotated) and the deliveries made to your experiments' URLs."""

from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from experiments.api import serializers as s
from experiments.api.base import PAGE_PARAMETERS, ApiView, paged
from experiments.api.errors import error_responses
from experiments.notifications import webhooks
from experiments.notifications.selectors import own_deliveries

SIGNING = (
    "Each delivery is a POST of JSON with headers `X-Diffplatform-Event`, `X-Diffplatform-Delivery`, "
    "`X-Diffplatform-Timestamp` and `X-Diffplatform-Signature: sha256=<hex>`: the HMAC-SHA256 of "
    '`"<timestamp>.<body>"` under this secret. Compare it in constant time and reject old timestamps.'
)


class WebhookSecretView(ApiView):
    @extend_schema(
        tags=["webhooks"],
        summary="Your webhook signing secret",
        description=SIGNING,
        responses={200: s.WebhookSecretOutput, **error_responses()},
    )
    def get(self, request):
        return Response(s.WebhookSecretOutput(webhooks.secret_for(request.user)).data)

    @extend_schema(
        tags=["webhooks"],
        summary="Rotate your webhook signing secret",
        description="Deliveries from now on are signed with the new secret.",
        request=None,
        responses={200: s.WebhookSecretOutput, **error_responses()},
    )
    def post(self, request):
        return Response(s.WebhookSecretOutput(webhooks.rotate_secret(request.user)).data)


class WebhookDeliveryListView(ApiView):
    @extend_schema(
        tags=["webhooks"],
        operation_id="webhook_deliveries_list",
        summary="Webhook deliveries to your experiments' URLs, newest first",
        description="State `pending` (an attempt is queued), `delivered`, `refused` (not a public address) or `failed` "
        "(after `attempts`); `last_error` says which in words, never with the receiver's answer.",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.WebhookDeliveryOutput), **error_responses()},
    )
    def get(self, request):
        return self.paginate(own_deliveries(request.user), s.WebhookDeliveryOutput, "-created_at")
