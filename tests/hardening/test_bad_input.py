"""Every bad input through the web UI and the REST API: a clear 4xx that says what to fix (or,
where the documented rule says so, acceptance with normalisation), and nothing left behind:
no row, no file in storage, no queued task."""

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experiments import storage
from experiments.models import Dataset, ImagePair, ModelCheckpoint
from tests.factories import make_dataset
from tests.hardening.bad_inputs import IMAGE_CASES, ZIP_CASES, pickled_checkpoint


def queued_tasks() -> int:
    """Messages waiting in our Celery queues, webhook deliveries' included (the broker is our own
    Redis namespace)."""
    from diffplatform.celery import app

    with app.connection_for_write() as connection, connection.channel() as channel:
        return sum(channel.client.llen(channel._q_for_pri(queue, 0)) for queue in ("cpu", "gpu", "webhooks"))


@pytest.fixture
def web(user):
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def api(user):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def snapshot():
    return ImagePair.objects.count(), set(storage.list_all_keys()), queued_tasks()


def files_for(case):
    a, b, label, _, _ = IMAGE_CASES[case]
    files = {"image_a": SimpleUploadedFile("a.png", a), "image_b": SimpleUploadedFile("b.png", b)}
    if label is not None:
        files["label"] = SimpleUploadedFile("label.png", label)
    return files


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_images_through_the_web_form(web, user, case):
    dataset = make_dataset(user)
    accepted, mention = IMAGE_CASES[case][3], IMAGE_CASES[case][4]
    before = snapshot()
    response = web.post(reverse("experiments:dataset_detail", args=[dataset.pk]), {"name": case, **files_for(case)})
    if accepted:
        assert response.status_code == 302, response.content.decode()[:2000]
        assert dataset.pairs.filter(name=case).exists()
        return
    assert response.status_code == 400
    assert mention in response.content.decode()
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(IMAGE_CASES))
def test_images_through_the_api(api, user, case):
    dataset = make_dataset(user)
    accepted, mention = IMAGE_CASES[case][3], IMAGE_CASES[case][4]
    before = snapshot()
    response = api.post(f"/api/v1/datasets/{dataset.pk}/pairs/", {"name": case, **files_for(case)}, format="multipart")
    if accepted:
        assert response.status_code == 201, response.json()
        return
    assert 400 <= response.status_code < 500
    error = response.json()["error"]
    assert mention in error["message"] or mention in error.get("fields", {})
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_zips_through_the_web_upload(web, user, case):
    dataset = make_dataset(user)
    data, mention = ZIP_CASES[case]
    before = snapshot()
    upload = SimpleUploadedFile("set.zip", data, content_type="application/zip")
    response = web.post(reverse("experiments:dataset_upload", args=[dataset.pk]), {"files": [upload]})
    assert response.status_code == 400
    assert mention in response.content.decode()
    assert snapshot() == before


@pytest.mark.django_db
@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_zips_through_the_api_import(api, user, case):
    dataset = make_dataset(user)
    data, mention = ZIP_CASES[case]
    before = snapshot()
    response = api.post(f"/api/v1/datasets/{dataset.pk}/import/", {"file": SimpleUploadedFile("set.zip", data)},
                        format="multipart")  # fmt: skip
    assert 400 <= response.status_code < 500
    assert mention in response.json()["error"]["message"]
    assert snapshot() == before


@pytest.mark.django_db
def test_a_pickled_checkpoint_is_refused_and_never_run(api, capsys):
    before = snapshot()
    upload = SimpleUploadedFile("evil.pt", pickled_checkpoint())
    response = api.post("/api/v1/checkpoints/", {"file": upload, "detector": "siamese-unet"}, format="multipart")
    assert response.status_code == 422
    assert "pickle payload executed" not in capsys.readouterr().out
    assert not ModelCheckpoint.objects.exists()
    assert snapshot() == before


@pytest.mark.django_db
def test_uploads_over_the_limit_are_refused_on_pages_and_api(web, api, user, settings):
    settings.MAX_UPLOAD_MB = 1
    dataset = make_dataset(user)
    big = SimpleUploadedFile("a.png", b"\0" * (2 * 1024 * 1024))
    before = snapshot()
    page = web.post(reverse("experiments:dataset_detail", args=[dataset.pk]),
                    {"name": "big", "image_a": big, "image_b": big})  # fmt: skip
    assert page.status_code == 413
    assert "at most 1 MB" in page.content.decode()
    big.seek(0)
    response = api.post(f"/api/v1/datasets/{dataset.pk}/pairs/", {"name": "big", "image_a": big, "image_b": big},
                        format="multipart")  # fmt: skip
    assert response.status_code == 413
    assert snapshot() == before
    assert Dataset.objects.count() == 1


def test_the_suite_covers_every_kind_named_in_the_issue():
    kinds = set(IMAGE_CASES) | set(ZIP_CASES)
    for required in ("corrupt", "truncated", "zero-bytes", "text-named-png", "decompression-bomb", "animated-gif",
                     "animated-webp", "16-bit-png", "cmyk-jpeg", "grayscale", "alpha", "a-and-b-of-different-sizes",
                     "label-other-size", "label-jpeg-noisy", "dot-dot-path", "absolute-path", "symlink", "zip-bomb"):  # fmt: skip
        assert required in kinds
    assert settings.MAX_UPLOAD_MB > 0
