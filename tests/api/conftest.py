"""API test helpers: token clients for two users, PNG and zip builders, a run finished in-process."""

import io
import zipfile

import pytest
import redis
from django.conf import settings
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from experiments import storage
from experiments.datasets import services as dataset_services
from experiments.models import BatchJob, Dataset, Experiment, ImagePair, ModelCheckpoint, Result, Run, TrainingJob
from experiments.runs import services as run_services
from tests.factories import run_in_process as finish_run_in_process


@pytest.fixture(autouse=True)
def fresh_throttles():
    """Throttle counters live in the real Redis; start every test with none (ids are reused). Only
    this session's (its key namespace): other sessions may share the Redis server."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    for pattern in ("throttle_*", "auth_attempts_*"):
        for key in client.scan_iter(match=f"{settings.KEY_NAMESPACE}:*{pattern}"):
            client.delete(key)


def token_client(user) -> APIClient:
    token, _ = Token.objects.get_or_create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(user):
    return token_client(user)


@pytest.fixture
def other_api(other_user):
    return token_client(other_user)


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture
def levir_zip(make_pair_bytes):
    def make(count=2, **extra):
        entries = {}
        for i in range(count):
            a, b, label = make_pair_bytes(seed=i)
            entries[f"A/p{i}.png"], entries[f"B/p{i}.png"], entries[f"label/p{i}.png"] = a, b, label
        entries.update(extra)
        return zip_bytes(entries)

    return make


def upload(name: str, data: bytes, content_type="image/png"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data, content_type=content_type)


def row_counts() -> dict:
    models = (Dataset, ImagePair, Experiment, Run, Result, ModelCheckpoint, TrainingJob, BatchJob)
    return {model.__name__: model.objects.count() for model in models}


@pytest.fixture
def snapshot_state():
    """What exists now (rows and stored files), to prove a refused request left nothing behind."""

    def take():
        return row_counts(), sorted(storage.list_all_keys())

    return take


@pytest.fixture
def labelled_dataset(user, make_pair_bytes):
    dataset = dataset_services.dataset_create(owner=user, name="labelled")
    for i, category in enumerate(("roads", "roads", "fields")):
        a, b, label = make_pair_bytes(seed=i)
        dataset_services.pair_create(
            dataset=dataset, name=f"p{i}", a_bytes=a, b_bytes=b, label_bytes=label, category=category
        )
    return dataset


@pytest.fixture
def finished_run(user, labelled_dataset):
    experiment = run_services.experiment_create(
        owner=user, dataset=labelled_dataset, name="e", detectors=["absdiff", "ssim"], threshold=0.3
    )
    return finish_run_in_process(run_services.run_start(experiment=experiment))
