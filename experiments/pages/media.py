"""Media files for the pages; the rule and the response are `experiments.media`'s, shared with the API."""

from django.contrib.auth.decorators import login_required
from django.views.decorators.http import require_GET

from experiments.media import media_response


@login_required
@require_GET
def media(request, key):
    return media_response(request.user, key)
