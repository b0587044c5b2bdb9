"""Pictures under `results/<cache key>/` are shared; a refused row write removes them only when no
Result and no result-cache entry points at them, and only when that could be checked."""

import pytest

from experiments import storage
from experiments.runs import engine, result_cache
from tests.live_services import free_port

KEY = "f" * 64


def written_entry():
    entry = {
        "metrics": {},
        "heatmap_key": storage.save_bytes(f"results/{KEY}/heatmap.png", b"h"),
        "mask_key": storage.save_bytes(f"results/{KEY}/mask.png", b"m"),
        "error_map_key": storage.save_bytes(f"results/{KEY}/error-map.png", b"e"),
    }
    return entry, [entry["heatmap_key"], entry["mask_key"], entry["error_map_key"]]


@pytest.fixture
def clean_cache():
    from django.core.cache import cache

    cache.delete(f"result:{KEY}")
    yield
    cache.delete(f"result:{KEY}")


@pytest.mark.django_db
def test_files_survive_a_refused_write_when_the_result_cache_points_at_them(media_storage, clean_cache):
    entry, keys = written_entry()
    result_cache.store(KEY, entry)  # another run stored this result
    engine._discard_unreferenced(entry)
    assert all(storage.exists(key) for key in keys)


@pytest.mark.django_db
def test_unreferenced_files_of_a_refused_write_are_removed(media_storage, clean_cache):
    entry, keys = written_entry()
    engine._discard_unreferenced(entry)
    assert not any(storage.exists(key) for key in keys)


@pytest.mark.django_db
def test_files_are_kept_when_the_cache_cannot_be_checked(media_storage, settings):
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{free_port()}/0"}}
    entry, keys = written_entry()
    engine._discard_unreferenced(entry)  # the cache answers a miss, but Redis is unreachable
    assert all(storage.exists(key) for key in keys)
