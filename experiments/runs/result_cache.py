"""Results cache in Redis: identical work is reused, and only identical work.

The key is the sha256 of the owner, the pair's content (A, B and label hashes), the detector, its
weights' identity and :func:`computation_record`: everything else that can change a result (code
and library versions, device and precision, the alignment applied to the pair, input size,
threshold, the detector's options, an ensemble's members and their weights).

Entries point at content-addressed artefacts (`results/<key>/...`: a map and a mask, and the
pictures drawn from them when first read, `runs.result_pictures`), so a hit costs one Redis read
and two storage existence checks.
"""

import hashlib
import json

from django.core.cache import cache

from inference.evaluation import METRICS_VERSION

TIMEOUT_S = 30 * 24 * 3600


def computation_record(
    *,
    code: str,
    libraries: dict,
    device: dict,
    precision: str | None,
    alignment: dict,
    input_size: int | None,
    threshold: float,
    options: dict,
    members: list | None = None,
    result_batch_size: int = 1,
) -> dict:
    """Everything besides the inputs and the weights that a result depends on.

    ``code``: ``environment.code_version()``; ``libraries``: torch, torchvision, numpy, opencv
    versions; ``device``: ``{"type": "cpu"}`` or, on CUDA, ``{"type": "cuda", "gpu", "cuda",
    "cudnn"}``; ``precision``: fp32, bf16 or fp16; ``alignment``: ``{"align": False}`` or the warp
    applied to this pair (method, homography, ok); ``input_size``: the size the network ran at
    (None for classical detectors); ``options``: what the detector is built with; ``members``: an
    ensemble's members (name, mixing weight, weights identity, input size, precision);
    ``result_batch_size``: the batch size the stored map was computed at."""
    return {
        "code": code,
        "libraries": dict(libraries),
        "device": dict(device),
        "precision": precision,
        "alignment": dict(alignment),
        "input_size": input_size,
        "threshold": float(threshold),
        "options": dict(options),
        "members": list(members) if members is not None else None,
        "result_batch_size": result_batch_size,
    }


def result_cache_key(*, owner_id, pair, detector: str, weights_ref: str, computation: dict) -> str:
    material = {
        "owner": owner_id,
        "a": pair.a_sha256,
        "b": pair.b_sha256,
        "label": pair.label_sha256,
        "detector": detector,
        "weights": weights_ref,
        "computation": computation,
        "metrics": METRICS_VERSION,  # what a stored per-pair figure means, even where no git commit is known
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def lookup(key: str) -> dict | None:
    return cache.get(f"result:{key}")


def lookup_many(keys: list[str]) -> dict[str, dict]:
    """The entries the cache holds for `keys` (one round trip), by key; keys it lacks are left out."""
    found = cache.get_many([f"result:{key}" for key in keys])
    return {key: found[f"result:{key}"] for key in keys if f"result:{key}" in found}


def store(key: str, entry: dict) -> None:
    cache.set(f"result:{key}", entry, timeout=TIMEOUT_S)


def store_many(entries: dict[str, dict]) -> None:
    """Store a batch's entries in one round trip."""
    if entries:
        cache.set_many({f"result:{key}": entry for key, entry in entries.items()}, timeout=TIMEOUT_S)


def lookup_info(key: str) -> dict | None:
    """Detector metadata (params, FLOPs, provenance) remembered from the last time it was loaded."""
    return cache.get(f"detector-info:{key}")


def store_info(key: str, info: dict) -> None:
    cache.set(f"detector-info:{key}", info, timeout=TIMEOUT_S)


def lookup_model_memory(key: str) -> dict | None:
    """A detector's model memory (`inference.memory_probe`), measured once per weights, size and device."""
    return cache.get(f"model-memory:{key}")


def store_model_memory(key: str, figure: dict) -> None:
    cache.set(f"model-memory:{key}", figure, timeout=TIMEOUT_S)
