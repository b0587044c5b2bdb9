"""Freeing the shared result folders (`results/<cache key>/`) of deleted runs, by reference.

A result folder is content-addressed and so shared: every run that computed (or reused through the
result cache) the same result points at it. When runs are deleted, each folder their results used
is removed once no remaining Result points at it; its result-cache entry goes first, so that no new
run picks the folder up while it is being removed (a cache hit checks that the files still exist,
`result_pictures.stored`, and computes the result again when they do not).
"""

from django.core.cache import cache
from django.db.models import Q

from experiments import storage
from experiments.models import Result
from experiments.runs import result_pictures

CHUNK = 500


def folders_of(runs) -> list[str]:
    """The result folders the runs' results point at (read before the runs are deleted)."""
    keys = Result.objects.filter(run__in=runs).exclude(mask_key="").values_list("mask_key", flat=True).distinct()
    return sorted({key.rsplit("/", 1)[0] for key in keys.iterator() if key.startswith("results/")})


def release(folders: list[str]) -> None:
    """Remove each folder no Result points at any more (run after the delete committed)."""
    for start in range(0, len(folders), CHUNK):
        chunk = folders[start : start + CHUNK]
        masks = [f"{folder}/{result_pictures.MASK}" for folder in chunk]
        heatmaps = [f"{folder}/{result_pictures.HEATMAP}" for folder in chunk]
        still = Result.objects.filter(Q(mask_key__in=masks) | Q(heatmap_key__in=heatmaps))
        used = {key.rsplit("/", 1)[0] for key in still.values_list("mask_key", flat=True)}
        unused = [folder for folder in chunk if folder not in used]
        cache.delete_many([f"result:{folder.split('/', 1)[1]}" for folder in unused])
        for folder in unused:
            storage.delete_prefix(folder)
