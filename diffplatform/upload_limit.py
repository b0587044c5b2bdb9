"""Refuse page requests whose body is over the upload limit before Django reads it (HTTP 413).

The REST API answers its own 413 in its JSON error shape (`experiments.api.base.ApiView`).
"""

from django.conf import settings
from django.http import HttpResponse

MULTIPART_OVERHEAD = 64 * 1024


class UploadLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.method == "POST" and not request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > settings.MAX_UPLOAD_MB * 1024 * 1024 + MULTIPART_OVERHEAD:
                message = (
                    f"The upload is {length / 2**20:.1f} MB; at most {settings.MAX_UPLOAD_MB} MB can be sent at once. "
                    "Send fewer files per upload, or a smaller zip."
                )
                return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
        return self.get_response(request)
