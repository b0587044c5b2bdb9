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


def code_version() -> str:
    """What code computed a result: ``git:<commit>``, else the installed package's version."""
    commit = git_commit()
    if commit != "unknown":
        return f"git:{commit}"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"package:diffplatform=={version('diffplatform')}"
    except PackageNotFoundError:
        return "unknown"


KEY_LIBRARIES = ("torch", "torchvision", "numpy", "opencv")


def key_library_versions() -> dict:
    """The library versions a result depends on (part of the result-cache key)."""
    versions = library_versions()
    return {name: versions[name] for name in KEY_LIBRARIES}


def _celery_worker_name() -> str | None:
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return None
    request = getattr(current_task, "request", None) if current_task else None
    return getattr(request, "hostname", None) or None


def worker_record(device: str | None = None, precision: str | None = None) -> dict:
    """The machine and process that compute: host, Celery worker, CPU model, threads, libraries,
    and, given the device a detector ran on, its GPU, CUDA/cuDNN versions and precision."""
    import torch

    from inference.profiling import cpu_model

    record = {
        "host": platform.node(),
        "celery_worker": _celery_worker_name(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "versions": library_versions(),
    }
    if device is not None:
        device = str(device)  # "cpu", "cuda[:N]", or "mixed" (an ensemble with members on the GPU)
        gpu = device if device.startswith("cuda") else None
        if device == "mixed" and torch.cuda.is_available():
            gpu = f"cuda:{torch.cuda.current_device()}"
        record.update(
            device=device,
            gpu=torch.cuda.get_device_name(torch.device(gpu)) if gpu else None,
            cuda=torch.version.cuda if gpu else None,
            cudnn=torch.backends.cudnn.version() if gpu else None,
            precision=precision,
        )
    return record


def dataset_manifest_hash(pairs) -> str:
    """Hash of the dataset content a run saw: pair names with the hashes of A, B and label."""
    rows = sorted((p.name, p.a_sha256, p.b_sha256, p.label_sha256, p.category) for p in pairs)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def environment_record(run) -> dict:
    """The run's record as `prepare_run` writes it. What each detector ran on (worker, device,
    precision, input size, throughput) is added to ``detector_info`` by that detector's own task."""
    from experiments.runs.selectors import scored_pairs, validation_pairs

    experiment = run.experiment
    pairs = list(scored_pairs(experiment))
    held = validation_pairs(experiment)  # the pairs thresholds are chosen on (validation rule), never scored
    return {
        "git_commit": git_commit(),
        "versions": library_versions(),
        "prepare_worker": worker_record(),  # the worker that prepared (and aligned): not the detectors'
        "seed": experiment.seed,
        "settings": experiment.settings_record(),
        "detectors": list(experiment.detectors),
        "dataset": {
            "id": experiment.dataset_id,
            "name": experiment.dataset.name,
            "scored_pairs": len(pairs),
            "manifest_sha256": dataset_manifest_hash(pairs),
            **(
                {"validation_pairs": len(held), "validation_manifest_sha256": dataset_manifest_hash(held)}
                if held
                else {}
            ),
        },
        "weights": {},
    }
