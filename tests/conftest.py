"""Shared fixtures: a private media folder per test, users, image bytes."""

import io

import numpy as np
import pytest
from PIL import Image

from tests.factories import UserFactory

pytest_plugins = ["tests.live_services"]


@pytest.fixture(autouse=True)
def media_storage(settings, tmp_path):
    """Every test writes media into its own folder (S3 tests override this again)."""
    media = tmp_path / "media"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(media), "base_url": "/media/"},
        },
    }
    settings.MEDIA_ROOT = media
    return media


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def staff_user(db):
    return UserFactory(is_staff=True, is_superuser=True)


def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def make_pair_bytes():
    """A before/after pair with one changed square and its mask, as PNG bytes."""

    def make(size=48, seed=0, box=(10, 10, 24, 24)):
        rng = np.random.default_rng(seed)
        a = rng.integers(60, 120, size=(size, size, 3), dtype=np.uint8)
        b = a.copy()
        y0, x0, y1, x1 = box
        b[y0:y1, x0:x1] = (240, 30, 30)
        label = np.zeros((size, size), np.uint8)
        label[y0:y1, x0:x1] = 255
        return png_bytes(a), png_bytes(b), png_bytes(label)

    return make
