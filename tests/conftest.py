"""Shared fixtures: a private media folder per test, users, image bytes."""

import io
import os
import shutil
import sys

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


@pytest.fixture
def scratch_registry(monkeypatch):
    """A copy of the registry, so test plug-ins do not leak into other tests.

    Plug-in modules under ``tests.plugins`` are forgotten too, so that loading one imports it
    again and registers its detectors in the copy.
    """
    from inference import registry

    registry.list_detectors()  # make sure env-listed plug-ins are loaded before the copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    for module in [m for m in sys.modules if m.startswith("tests.plugins.")]:
        monkeypatch.delitem(sys.modules, module)
    return registry._REGISTRY


GRADIENT_PLUGIN = "tests.plugins.gradient_detector"


@pytest.fixture
def gradient_plugin(scratch_registry):
    """The test plug-in `gradient-diff` (tests/plugins/gradient_detector.py), registered for this test only."""
    from inference import registry

    registry.load_detector_modules([GRADIENT_PLUGIN])
    return "gradient-diff"


@pytest.fixture
def no_queue(monkeypatch):
    """Runs are created but not sent to a broker (tests that run the engine in process)."""
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)


# One Chromium for the whole session, shared by the browser tests and the deployment test: Playwright's
# sync API allows one running instance per thread.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The deployment test serves a real host name (tests/deploy/topology.py PUBLIC_HOST) on loopback.
    "--host-resolver-rules=MAP diff.example.test 127.0.0.1",
]


@pytest.fixture(scope="session")
def browser(django_db_setup):
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (make browser)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make
    # meanwhile are plain synchronous ones, so Django's async guard is lifted for this session.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous
