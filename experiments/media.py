"""Serving media (originals, masks, heatmaps, checkpoints): one access rule and one response for
the pages and the API alike. Media are never public: the owner (or staff) gets the file, anyone
else a 404. Local files go out through nginx (X-Accel-Redirect) when it fronts the app, else from
Django; with S3 the answer is a redirect to a short-lived presigned URL.
"""

import mimetypes

from django.conf import settings
from django.db.models import Q
from django.http import FileResponse, Http404, HttpResponse, HttpResponseRedirect

from experiments import storage
from experiments.checkpoints.selectors import checkpoints_visible_to
from experiments.datasets.selectors import datasets_visible_to
from experiments.runs import result_pictures
from experiments.runs.selectors import results_visible_to, runs_visible_to


def media_key_visible_to(user, key: str) -> bool:
    """Whether `user` may read the media file at `key` (see `experiments.storage` for the layout)."""
    if not user.is_authenticated:
        return False
    parts = key.split("/")
    if len(parts) < 3 or ".." in parts:
        return False
    kind, ref = parts[0], parts[1]
    if kind == "datasets" and ref.isdigit():
        return datasets_visible_to(user).filter(pk=int(ref)).exists()
    if kind == "runs" and ref.isdigit():
        return runs_visible_to(user).filter(pk=int(ref)).exists()
    if kind == "results":
        return results_visible_to(user).filter(Q(heatmap_key=key) | Q(mask_key=key) | Q(error_map_key=key)).exists()
    if kind == "checkpoints":
        return checkpoints_visible_to(user).filter(file_key=key).exists()
    return False


def media_response(user, key: str):
    """The file at `key` for `user`, or Http404 when it is not theirs or not there."""
    if not media_key_visible_to(user, key):
        raise Http404("No such file.")
    result_pictures.ensure(key)  # a result's heatmap or error map is drawn when first asked for
    if not storage.is_local():
        return HttpResponseRedirect(storage.presigned_url(key))
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    if settings.MEDIA_X_ACCEL_REDIRECT:
        response = HttpResponse(content_type=content_type)
        response["X-Accel-Redirect"] = f"/protected-media/{key}"
    else:
        try:
            handle = open(storage.local_path(key), "rb")  # noqa: SIM115 - FileResponse closes it
        except (FileNotFoundError, IsADirectoryError):
            raise Http404("No such file.") from None
        response = FileResponse(handle, content_type=content_type)
    response["Cache-Control"] = "private, max-age=3600"
    response["X-Content-Type-Options"] = "nosniff"
    return response
