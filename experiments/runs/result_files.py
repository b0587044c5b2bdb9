"""Freeing the shared result folders (`results/<cache key>/`) of deleted runs, by reference.

A result folder is content-addressed and so shared: every run that computed (or reused through the
result cache) the same result points at it. When runs are deleted, each folder their results used
and no remaining Result points at is freed in two steps, so that a run reusing it at that moment
never ends up pointing at removed files:

1. at once (`release`, after the delete commits): its result-cache entry is deleted, so no run
   picks the folder up from now on, and the folder is put on a list of folders to free;
2. `RESULT_FREE_GRACE_S` later (`free_due`, every worker's sweep): it is removed only if still no
   Result points at it (a run that had already read the cache entry has written its row by then),
   no cache entry was made for it again, and none of its files was written during the grace (a run
   computing the same result writes the files, then its rows).

A run that finds the files gone recomputes the result (a cache hit checks that the files exist,
`result_pictures.stored`). The list lives in Redis; with Redis down (no cache hit can happen then)
a folder is freed at once.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db.models import Q
from redis.exceptions import RedisError

from experiments import storage
from experiments.models import Result
from experiments.runs import result_pictures

logger = logging.getLogger(__name__)
CHUNK = 500
TO_FREE = "result_folders_to_free"


def folders_of(runs) -> list[str]:
    """The result folders the runs' results point at (read before the runs are deleted)."""
    keys = Result.objects.filter(run__in=runs).exclude(mask_key="").values_list("mask_key", flat=True).distinct()
    return sorted({key.rsplit("/", 1)[0] for key in keys.iterator() if key.startswith("results/")})


def release(folders: list[str]) -> None:
    """Stop reusing each folder no Result points at any more, and free it after the grace (run after
    the delete committed)."""
    grace = settings.RESULT_FREE_GRACE_S
    for chunk in _chunks(folders):
        unused = _unreferenced(chunk)
        cache.delete_many([_cache_key(folder) for folder in unused])
        if unused and (grace <= 0 or not _schedule(unused, time.time() + grace)):
            for folder in unused:
                storage.delete_prefix(folder)


def free_due(now: float | None = None) -> list[str]:
    """Remove the listed folders whose grace has passed and that nothing uses again; returns them."""
    now = time.time() if now is None else now
    client, key = _list()
    due = [name.decode() for name in client.zrangebyscore(key, "-inf", now)]
    claimed = [folder for folder in due if client.zrem(key, folder)]  # one worker frees each folder
    freed = []
    for chunk in _chunks(claimed):
        unused = set(_unreferenced(chunk))
        for folder in chunk:
            if folder not in unused or cache.get(_cache_key(folder)) is not None:
                continue  # a run uses it again: kept
            if _written_since(folder, now - settings.RESULT_FREE_GRACE_S):
                _schedule([folder], now + settings.RESULT_FREE_GRACE_S)  # a run is computing it now
                continue
            storage.delete_prefix(folder)
            freed.append(folder)
    return freed


def _chunks(folders: list[str]):
    for start in range(0, len(folders), CHUNK):
        yield folders[start : start + CHUNK]


def _unreferenced(folders: list[str]) -> list[str]:
    masks = [f"{folder}/{result_pictures.MASK}" for folder in folders]
    heatmaps = [f"{folder}/{result_pictures.HEATMAP}" for folder in folders]
    still = Result.objects.filter(Q(mask_key__in=masks) | Q(heatmap_key__in=heatmaps))
    used = {key.rsplit("/", 1)[0] for key in still.values_list("mask_key", flat=True)}
    return [folder for folder in folders if folder not in used]


def _cache_key(folder: str) -> str:
    return f"result:{folder.split('/', 1)[1]}"


def _list():
    key = cache.make_and_validate_key(TO_FREE)
    return cache._cache.get_client(key, write=True), key


def _schedule(folders: list[str], due: float) -> bool:
    try:
        client, key = _list()
        client.zadd(key, dict.fromkeys(folders, due))
    except (RedisError, OSError):
        logger.warning("Redis unavailable: %d result folders are freed at once", len(folders))
        return False
    return True


def _written_since(folder: str, since: float) -> bool:
    for key in storage.list_all_keys(folder):
        try:
            if default_storage.get_modified_time(key).timestamp() > since:
                return True
        except (FileNotFoundError, OSError, NotImplementedError):
            continue
    return False
