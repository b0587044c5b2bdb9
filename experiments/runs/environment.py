"""The reproducibility record of a run: code, library versions, hardware, data and settings."""

import hashlib
import json
import os
import platform
import subprocess
from functools import cache
from pathlib import Path

from django.conf import settings


@cache
def git_commit() -> str:
    if os.environ.get("GIT_COMMIT"):
        return os.environ["GIT_COMMIT"]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(settings.BASE_DIR), capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def library_versions() -> dict:
    import cv2
    import numpy
    import torch
    import torchvision

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "opencv": cv2.__version__,
        "numpy": numpy.__version__,
    }
    if torch.cuda.is_available():
        versions["cuda"] = torch.version.cuda
        versions["cudnn"] = torch.backends.cudnn.version()
    return versions


def hardware(device: str) -> dict:
    import torch

    record = {
        "device": device,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
    }
    if device.startswith("cuda"):
        record["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return record


def dataset_manifest_hash(pairs) -> str:
    """Hash of the dataset content a run saw: pair names with the hashes of A, B and label."""
    rows = sorted((p.name, p.a_sha256, p.b_sha256, p.label_sha256, p.category) for p in pairs)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def environment_record(run, device: str) -> dict:
    experiment = run.experiment
    return {
        "git_commit": git_commit(),
        "versions": library_versions(),
        "hardware": hardware(device),
        "seed": experiment.seed,
        "settings": experiment.settings_record(),
        "detectors": list(experiment.detectors),
        "dataset": {
            "id": experiment.dataset_id,
            "name": experiment.dataset.name,
            "manifest_sha256": dataset_manifest_hash(experiment.dataset.pairs.all()),
        },
        "weights": {},
    }
