"""Getting an API token, and the JSON 404 for unknown paths under `/api/v1/`."""

from django.contrib.auth import authenticate
from django.http import Http404
from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.models import Token
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from experiments.api import serializers as s
from experiments.api.base import ApiView
from experiments.api.errors import ApiError, error_responses
from experiments.api.throttling import AuthAttemptThrottle


class TokenView(ApiView):
    parser_classes = [JSONParser, FormParser]
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = [AuthAttemptThrottle]

    @extend_schema(
        tags=["auth"],
        summary="Get your API token",
        description="Exchange a username and password for the token to send as `Authorization: Token <key>`. "
        "Attempts are limited per client address together with the log-in and sign-up pages "
        "(`API_THROTTLE_AUTH`); beyond it: 429 with `Retry-After`.",
        request=s.TokenInput,
        responses={200: s.TokenOutput, **error_responses(400, 413, 415)},
        auth=[],
    )
    def post(self, request):
        data = self.valid(s.TokenInput).validated_data
        user = authenticate(request, username=data["username"], password=data["password"])
        if user is None or not user.is_active:
            error = ApiError("Unable to log in with these credentials.", status_code=401, field="password")
            error.auth_header = 'Token realm="api"'
            raise error
        token, _ = Token.objects.get_or_create(user=user)
        return Response({"token": token.key})


@extend_schema(exclude=True)
class NotFoundView(ApiView):
    """Unknown paths under `/api/v1/` answer in the API's error shape."""

    permission_classes = [AllowAny]

    def dispatch(self, request, *args, **kwargs):
        self.http_method_names = [*APIView.http_method_names]
        return super().dispatch(request, *args, **kwargs)

    def http_method_not_allowed(self, request, *args, **kwargs):
        raise Http404
