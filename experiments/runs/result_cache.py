"""Results cache in Redis: identical work (same images, label, detector, weights, settings) is reused.

Entries point at content-addressed artefacts (`results/<key>/...`) that are never rewritten, so
a hit costs one Redis read and one storage existence check.
"""

import hashlib
import json

from django.core.cache import cache

TIMEOUT_S = 30 * 24 * 3600


def result_cache_key(*, owner_id, pair, detector: str, weights_ref: str, settings_record: dict) -> str:
    material = [
        owner_id,
        pair.a_sha256,
        pair.b_sha256,
        pair.label_sha256,
        detector,
        weights_ref,
        sorted(settings_record.items()),
    ]
    return hashlib.sha256(json.dumps(material, default=str).encode()).hexdigest()


def lookup(key: str) -> dict | None:
    return cache.get(f"result:{key}")


def store(key: str, entry: dict) -> None:
    cache.set(f"result:{key}", entry, timeout=TIMEOUT_S)


def lookup_info(key: str) -> dict | None:
    """Detector metadata (params, FLOPs, provenance) remembered from the last time it was loaded."""
    return cache.get(f"detector-info:{key}")


def store_info(key: str, info: dict) -> None:
    cache.set(f"detector-info:{key}", info, timeout=TIMEOUT_S)
