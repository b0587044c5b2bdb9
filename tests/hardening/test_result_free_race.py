"""Issue 26: a deleted run's shared result folder is never removed under a run that reuses it.

The race: run B reads a result-cache entry (and checks that its files exist) while run A, the last
one pointing at the folder, is deleted; B's row is written after the delete checked references.
The folder's cache entry goes at once (no run reuses it from then on) and the folder itself only
after `RESULT_FREE_GRACE_S`, when references are checked again."""

import os
import time

import pytest
from django.core.cache import cache

from experiments import storage
from experiments.models import Result
from experiments.runs import result_files, result_pictures
from experiments.runs import services as run_services
from tests.factories import make_dataset, run_in_process
from tests.live_services import wait_until

GRACE_S = 600


@pytest.fixture
def shared(user, make_pair_bytes, no_queue, settings):
    """Two runs of the same work, sharing their result folders; the list of folders to free emptied."""
    settings.RESULT_FREE_GRACE_S = GRACE_S
    client, key = result_files._list()
    client.delete(key)
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(2)])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    first = run_in_process(run_services.run_start(experiment=experiment))
    yield experiment, first, result_files.folders_of([first.pk])
    client.delete(key)


def later(seconds: float = GRACE_S + 1) -> float:
    return time.time() + seconds


@pytest.mark.django_db
def test_a_run_reusing_a_cached_result_while_its_folder_is_freed_keeps_its_files(
    shared, django_capture_on_commit_callbacks
):
    experiment, first, folders = shared
    entry = cache.get(result_files._cache_key(folders[0]))
    assert entry is not None and result_pictures.stored(entry)  # what run B read before the delete
    with django_capture_on_commit_callbacks(execute=True):
        run_services.run_delete(run=first)
    assert all(cache.get(result_files._cache_key(f)) is None for f in folders)  # no run picks them up now
    assert all(storage.list_all_keys(f) for f in folders)  # B's check still holds: the files are there
    second = run_services.run_start(experiment=experiment)
    Result.objects.create(run=second, pair=experiment.dataset.pairs.first(), detector="absdiff",
                          mask_key=entry["mask_key"], heatmap_key=entry["heatmap_key"])  # fmt: skip
    freed = result_files.free_due(now=later())
    assert folders[0] not in freed and storage.list_all_keys(folders[0])  # B's row points at it: kept
    assert freed == folders[1:] and not storage.list_all_keys(folders[1])  # the other one goes
    assert result_files.free_due(now=later(2 * GRACE_S)) == []  # claimed once; B's folder is not listed


@pytest.mark.django_db
def test_a_folder_written_again_during_the_grace_is_kept_and_looked_at_later(
    shared, django_capture_on_commit_callbacks
):
    """A run computing the same result writes its files, then its row: a write during the grace
    means a row may be on its way."""
    _, first, folders = shared
    with django_capture_on_commit_callbacks(execute=True):
        run_services.run_delete(run=first)
    now = later()
    for key in storage.list_all_keys(folders[0]):
        storage.save_bytes(key, storage.read_bytes(key))  # written again now...
        mtime = now - GRACE_S / 2  # ...as seen from `now`: inside the grace
        os.utime(storage.local_path(key), (mtime, mtime))
    assert result_files.free_due(now=now) == folders[1:]
    assert storage.list_all_keys(folders[0])
    assert result_files.free_due(now=now + GRACE_S + 1) == folders[:1]  # nothing came: freed later


@pytest.mark.django_db
def test_nothing_is_freed_before_the_grace_and_everything_unused_after(shared, django_capture_on_commit_callbacks):
    _, first, folders = shared
    with django_capture_on_commit_callbacks(execute=True):
        run_services.run_delete(run=first)
    assert result_files.free_due() == [] and all(storage.list_all_keys(f) for f in folders)
    assert sorted(result_files.free_due(now=later())) == folders
    assert storage.list_all_keys("results") == [] and storage.list_all_keys("runs") == []


@pytest.mark.django_db
def test_a_cache_hit_whose_files_are_gone_is_computed_again(shared, django_capture_on_commit_callbacks, settings):
    experiment, first, folders = shared
    entry = cache.get(result_files._cache_key(folders[0]))
    settings.RESULT_FREE_GRACE_S = 0
    with django_capture_on_commit_callbacks(execute=True):
        run_services.run_delete(run=first)
    cache.set(result_files._cache_key(folders[0]), entry)  # a stale entry read before the delete
    second = run_in_process(run_services.run_start(experiment=experiment))
    for result in Result.objects.filter(run=second):
        assert storage.exists(result.mask_key)  # computed again, files written again


@pytest.mark.integration
def test_a_worker_frees_the_folders_once_their_grace_has_passed(shared, service_env, celery_workers, settings):
    _, first, folders = shared
    settings.RESULT_FREE_GRACE_S = 1
    run_services.run_delete(run=first)  # committed at once (transactional test): the folders are listed
    assert all(storage.list_all_keys(f) for f in folders)
    service_env.update(RESULT_FREE_GRACE_S="1", RESULT_FREE_SWEEP_S="0.5")
    celery_workers.start()  # a real worker, with no beat
    wait_until(lambda: storage.list_all_keys("results") == [], 30, "the worker's sweep")
