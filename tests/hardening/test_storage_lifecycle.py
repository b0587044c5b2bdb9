"""Storage that is freed and bounded (issue 26, item 8): deleting a run or an experiment removes
its files, shared result folders only once no result points at them; a rolled-back delete
removes nothing; staged uploads expire (on access and by every worker's sweep); a per-user
quota refuses an upload that would pass it with 413, saying what is used and what to delete."""

import io
import os
import time

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.urls import reverse
from PIL import Image
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experiments import quotas, storage
from experiments.checkpoints import services as checkpoint_services
from experiments.datasets import staging
from experiments.datasets.tasks import start_staged_upload_sweep
from experiments.models import ImagePair, Result, Run, UploadedModel
from experiments.runs import result_files, result_pictures
from experiments.runs import services as run_services
from tests.factories import make_dataset, run_in_process
from tests.hardening.bad_inputs import GOOD_LEVIR as GOOD_PAIR
from tests.hardening.bad_inputs import zip_entries as zip_of
from tests.live_services import wait_until


@pytest.fixture
def world(user, make_pair_bytes, no_queue):
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff", "ssim"])
    runs = [run_in_process(run_services.run_start(experiment=experiment)) for _ in range(2)]
    for run in runs:  # draw the pictures, as viewing the results does
        for result in Result.objects.filter(run=run):
            result_pictures.read(result.heatmap_key)
    return {"dataset": dataset, "experiment": experiment, "runs": runs}


# --------------------------------------------------------------------------- deletes free files
@pytest.fixture(autouse=True)
def free_at_once(settings):
    """What is freed, by reference; when (after a grace) is shown in test_result_free_race.py."""
    settings.RESULT_FREE_GRACE_S = 0


@pytest.mark.django_db
def test_a_deleted_runs_shared_result_folders_go_once_no_result_points_at_them(
    world, django_capture_on_commit_callbacks
):
    run, other = world["runs"]
    folders = result_files.folders_of([run.pk])
    assert len(folders) == 6 and folders == result_files.folders_of([other.pk])  # the second run shares them
    assert all(storage.list_all_keys(folder) for folder in folders)
    with django_capture_on_commit_callbacks(execute=True):
        run_services.run_delete(run=run)
    assert all(storage.list_all_keys(folder) for folder in folders)  # the other run still shows them
    with django_capture_on_commit_callbacks(execute=True):
        run_services.run_delete(run=other)
    assert storage.list_all_keys("results") == []
    assert storage.list_all_keys("runs") == []


@pytest.mark.django_db
def test_a_rolled_back_delete_removes_no_file(world, django_capture_on_commit_callbacks):
    run = world["runs"][0]
    before = sorted(storage.list_all_keys())

    def failing_request():
        with transaction.atomic():
            run_services.experiment_delete(experiment=world["experiment"])
            raise RuntimeError("the request failed after the delete")

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RuntimeError):
        failing_request()
    assert Run.objects.filter(pk=run.pk).exists()
    assert sorted(storage.list_all_keys()) == before


@pytest.mark.django_db
def test_deleting_an_experiment_frees_every_result_folder_of_its_runs(world, django_capture_on_commit_callbacks):
    assert storage.list_all_keys("results")
    with django_capture_on_commit_callbacks(execute=True):
        run_services.experiment_delete(experiment=world["experiment"])
    assert storage.list_all_keys("results") == [] and storage.list_all_keys("runs") == []
    assert storage.list_all_keys(storage.dataset_key(world["dataset"].pk))  # the dataset keeps its pairs


@pytest.mark.django_db
def test_a_result_folder_of_another_owner_is_kept(
    world, other_user, make_pair_bytes, django_capture_on_commit_callbacks
):
    run = world["runs"][0]
    folder = result_files.folders_of([run.pk])[0]
    other_run = run_in_process(
        run_services.experiment_start(
            owner=other_user,
            dataset=make_dataset(other_user, pairs=[("q", *make_pair_bytes())]),
            name="o",
            detectors=["absdiff"],
        )
    )
    Result.objects.filter(run=other_run).update(mask_key=f"{folder}/mask.png", heatmap_key=f"{folder}/heatmap.png")
    with django_capture_on_commit_callbacks(execute=True):
        run_services.experiment_delete(experiment=world["experiment"])
    assert storage.list_all_keys(folder)  # another owner's result points at it (by reference, not by owner)


# --------------------------------------------------------------------------- staged uploads expire
def aged(key: str, seconds: float) -> str:
    path = storage.local_path(key)
    os.utime(path, (time.time() - seconds, time.time() - seconds))
    return key


@pytest.mark.django_db
def test_expired_staged_uploads_are_swept_and_young_ones_kept(settings, user):
    settings.STAGED_UPLOAD_TTL_S = 3600
    old = aged(storage.save_bytes(f"uploads/{user.pk}/old.zip", b"z"), 7200)
    young = storage.save_bytes(f"uploads/{user.pk}/young.zip", b"z")
    assert staging.expire_staged() == 1
    assert not storage.exists(old) and storage.exists(young)


@pytest.mark.django_db
def test_an_expired_staged_upload_is_removed_when_it_is_asked_for(client, settings, user):
    client.force_login(user)
    dataset = make_dataset(user)
    response = client.post(reverse("experiments:dataset_upload", args=[dataset.pk]),
                           {"files": [SimpleUploadedFile("d.zip", zip_of(GOOD_PAIR))], "category": ""})  # fmt: skip
    assert response.status_code == 302, response.content
    [key] = storage.list_all_keys("uploads")
    settings.STAGED_UPLOAD_TTL_S = 60
    aged(key, 120)
    page = client.get(response["Location"])
    assert page.status_code == 302 and not storage.exists(key)
    assert ImagePair.objects.count() == 0


@pytest.mark.django_db
def test_the_sweep_thread_removes_what_expires(settings, user):
    settings.STAGED_UPLOAD_TTL_S = 60
    key = aged(storage.save_bytes(f"uploads/{user.pk}/old.zip", b"z"), 120)
    stop = start_staged_upload_sweep(interval_s=0.05)
    try:
        wait_until(lambda: not storage.exists(key), 10, "the sweep")
    finally:
        stop.set()


def test_a_worker_sweeps_expired_uploads_when_it_starts(service_env, celery_workers):
    key = aged(storage.save_bytes("uploads/1/old.zip", b"z"), 7200)
    service_env.update(STAGED_UPLOAD_TTL_S="3600", STAGED_UPLOAD_SWEEP_S="1")
    celery_workers.start()  # a real worker, with no beat
    wait_until(lambda: not storage.exists(key), 30, "the worker's sweep")


# --------------------------------------------------------------------------- the storage quota
def big_png(seed: int, side: int = 700) -> bytes:
    """About 1.4 MB: random pixels do not compress."""
    array = np.random.default_rng(seed).integers(0, 255, size=(side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def api_for(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


@pytest.mark.django_db
def test_storage_used_counts_pairs_models_checkpoints_and_staged_uploads(user, other_user, make_pair_bytes):
    a, b, label = make_pair_bytes()
    make_dataset(user, pairs=[("p", a, b, label)])
    make_dataset(other_user, name="theirs", pairs=[("p", a, b, label)])
    checkpoint_services.checkpoint_register(owner=user, detector="siamese-unet", dataset=None, data=b"w" * 1000,
                                            sha256="c" * 64, epochs=1, val_metrics={}, config={})  # fmt: skip
    UploadedModel.objects.create(owner=user, name="m", file_key="models/x.onnx", sha256="d" * 64, size_bytes=5000,
                                 mean=[0, 0, 0], std=[1, 1, 1], inputs="two", output="logits")  # fmt: skip
    storage.save_bytes(f"uploads/{user.pk}/t.zip", b"z" * 300)
    assert quotas.storage_used(user) == len(a) + len(b) + 1000 + 5000 + 300


@pytest.mark.django_db
def test_a_pair_that_passes_the_quota_answers_413_and_stores_nothing(settings, user):
    settings.USER_STORAGE_QUOTA_MB = 2
    api = api_for(user)
    dataset = make_dataset(user)
    first = api.post(f"/api/v1/datasets/{dataset.pk}/pairs/", {"name": "p1", "image_a": io.BytesIO(big_png(0)),
                     "image_b": io.BytesIO(GOOD_PAIR["B/p.png"])}, format="multipart")  # fmt: skip
    assert first.status_code == 201, first.content
    before = ImagePair.objects.count(), sorted(storage.list_all_keys())
    second = api.post(f"/api/v1/datasets/{dataset.pk}/pairs/", {"name": "p2", "image_a": io.BytesIO(big_png(1)),
                      "image_b": io.BytesIO(GOOD_PAIR["B/p.png"])}, format="multipart")  # fmt: skip
    assert second.status_code == 413, second.content
    message = second.json()["error"]["message"]
    assert "of your 2 MB storage quota" in message and "already use 1.4 MB" in message and "Delete" in message
    assert (ImagePair.objects.count(), sorted(storage.list_all_keys())) == before


@pytest.mark.django_db
def test_an_archive_that_passes_the_quota_part_way_writes_nothing(settings, user):
    settings.USER_STORAGE_QUOTA_MB = 2
    dataset = make_dataset(user)
    entries = {f"{role}/p{i}.png": big_png(10 * i + j) for i in range(2) for j, role in enumerate("AB")}
    response = api_for(user).post(f"/api/v1/datasets/{dataset.pk}/import/",
                                  {"file": io.BytesIO(zip_of(entries))}, format="multipart")  # fmt: skip
    assert response.status_code == 413, response.content
    assert "storage quota" in response.json()["error"]["message"]
    assert ImagePair.objects.count() == 0 and storage.list_all_keys() == []


@pytest.mark.django_db
def test_staging_an_upload_counts_against_the_quota(client, settings, user):
    settings.USER_STORAGE_QUOTA_MB = 1
    client.force_login(user)
    dataset = make_dataset(user)
    entries = {"A/p.png": big_png(0), "B/p.png": GOOD_PAIR["B/p.png"]}
    response = client.post(reverse("experiments:dataset_upload", args=[dataset.pk]),
                           {"files": [SimpleUploadedFile("d.zip", zip_of(entries))], "category": ""})  # fmt: skip
    assert response.status_code == 400 and "storage quota" in response.content.decode()
    assert storage.list_all_keys() == []


@pytest.mark.django_db
def test_staff_are_exempt_unless_configured(settings, staff_user):
    settings.USER_STORAGE_QUOTA_MB = 1
    dataset = make_dataset(staff_user)
    pair = {"image_a": io.BytesIO(big_png(0)), "image_b": io.BytesIO(GOOD_PAIR["B/p.png"])}
    assert api_for(staff_user).post(f"/api/v1/datasets/{dataset.pk}/pairs/", {"name": "p", **pair},
                                    format="multipart").status_code == 201  # fmt: skip
    settings.QUOTA_EXEMPT_STAFF = False
    with pytest.raises(quotas.QuotaExceeded, match="of your 1 MB storage quota"):
        quotas.quota_check(user=staff_user, adding=1)
