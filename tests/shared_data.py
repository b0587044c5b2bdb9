"""The real change-detection crops in ``../shared/data`` beside the repository (research use only:
read there, never copied in). A clone without that folder skips the tests that read it, naming the
folder they need; CI (``.ci/run``) sets ``DIFFPLATFORM_REQUIRE_SHARED_DATA=1``, so there a missing
folder fails those tests instead of skipping them."""

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get("DIFFPLATFORM_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data"
)
MISSING = "<shared data missing>"


def shared_folder(name: str) -> Path:
    """``../shared/data/<name>``, or a skip (a failure where it is required) naming the folder."""
    path = SHARED_DATA / name
    if not path.is_dir():
        message = f"needs the real crops in {path} (../shared/data/{name} beside the repository)"
        if os.environ.get("DIFFPLATFORM_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(f"{message}; DIFFPLATFORM_REQUIRE_SHARED_DATA=1 forbids skipping", pytrace=False)
        pytest.skip(message)
    return path


def shared_names(name: str, role: str = "A", pattern: str = "*.png") -> list[str]:
    """File names in ``<name>/<role>`` for parametrising; one placeholder when the folder is missing,
    so the test runs once and `shared_folder` skips (or fails) it with the folder named."""
    folder = SHARED_DATA / name / role
    names = sorted(p.name for p in folder.glob(pattern)) if folder.is_dir() else []
    return names or [MISSING]
