"""The quick two-image diff: classical detectors in the request, learned ones refused."""

import base64
import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import upload
from tests.api.test_datasets import error_of
from tests.conftest import png_bytes

pytestmark = pytest.mark.django_db


def post_diff(api, a, b, detector="absdiff", **extra):
    return api.post(
        "/api/v1/diff/", {"image_a": upload("a.png", a), "image_b": upload("b.png", b), "detector": detector, **extra}
    )


def decode_png(text: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(text))))


@pytest.mark.parametrize("detector", ["absdiff", "ssim"])
def test_a_diff_returns_the_heatmap_and_mask_right_away(api, make_pair_bytes, detector):
    a, b, _ = make_pair_bytes(size=48)
    response = post_diff(api, a, b, detector=detector, threshold=0.2)
    assert response.status_code == 200, response.content
    body = response.json()
    mask = decode_png(body["mask_png"])
    assert mask.shape[:2] == (48, 48) and mask[16, 16] == 255 and mask[40, 40] == 0
    assert decode_png(body["heatmap_png"]).shape[0] == 48
    assert body["changed_fraction"] == pytest.approx((mask > 0).mean(), abs=1e-6)
    assert body["metrics"] is None


def test_a_label_adds_the_metrics(api, make_pair_bytes):
    a, b, label = make_pair_bytes(size=48)
    body = post_diff(api, a, b, threshold=0.2, label=upload("l.png", label)).json()
    assert body["metrics"]["iou"] > 0.5 and "hist_pos" not in body["metrics"]


def test_a_learned_detector_is_refused_pointing_to_batches(api, make_pair_bytes):
    a, b, _ = make_pair_bytes()
    response = post_diff(api, a, b, detector="siamese-resnet50")
    assert response.status_code == 422
    assert "/api/v1/batches/" in error_of(response)["message"]


def test_an_unknown_detector_is_refused(api, make_pair_bytes):
    a, b, _ = make_pair_bytes()
    response = post_diff(api, a, b, detector="magic")
    assert response.status_code == 422 and "detector" in error_of(response)["fields"]


def test_an_image_above_one_megapixel_answers_413(api, make_pair_bytes):
    a, _, _ = make_pair_bytes()
    big = png_bytes(np.zeros((1025, 1024, 3), np.uint8))
    response = post_diff(api, a, big)
    assert response.status_code == 413
    assert "image_b" in error_of(response)["fields"]


def test_a_bad_image_or_label_is_refused_naming_it(api, make_pair_bytes):
    a, b, _ = make_pair_bytes()
    assert "image_a" in error_of(post_diff(api, b"junk", b))["fields"]
    wrong_size = png_bytes(np.zeros((10, 10), np.uint8))
    response = post_diff(api, a, b, label=upload("l.png", wrong_size))
    assert response.status_code == 422 and "label" in error_of(response)["fields"]


def test_the_quick_maps_equal_the_registered_classical_detectors(make_pair_bytes):
    from inference import create_detector, load_image
    from inference.pixel_maps import change_map

    a_bytes, b_bytes, _ = make_pair_bytes(size=40)
    a, b = load_image(a_bytes), load_image(b_bytes)
    a_small = a[:32, :32].copy()
    for name in ("absdiff", "ssim"):
        detector = create_detector(name)
        np.testing.assert_allclose(change_map(name, a, b), detector.predict(a, b), atol=1e-6)
        np.testing.assert_allclose(change_map(name, a_small, b), detector.predict(a_small, b), atol=1e-6)


PROBE = """
import io, sys
import django
django.setup()
import numpy as np
from PIL import Image
from django.contrib.auth import get_user_model
from rest_framework.test import APIRequestFactory, force_authenticate
import diffplatform.urls  # the whole URL tree: every page and API view module
from experiments.api.diff import DiffView

def png(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(buffer, "PNG")
    buffer.seek(0)
    buffer.name = "x.png"
    return buffer

request = APIRequestFactory().post("/api/v1/diff/", {"image_a": png(0), "image_b": png(200), "detector": "ssim"})
force_authenticate(request, user=get_user_model()(pk=10**9, username="probe"))
response = DiffView.as_view()(request)
assert response.status_code == 200, response.data
print("torch imported:", "torch" in sys.modules)
"""


def test_the_web_process_answers_a_diff_without_importing_torch():
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch imported: False" in result.stdout
