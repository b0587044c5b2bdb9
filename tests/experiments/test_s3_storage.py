"""The S3 path against a live S3 API on loopback (moto_server), not a mock of boto."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import boto3
import pytest
import requests
from django.urls import reverse

from experiments import storage
from tests.factories import make_dataset

BUCKET = "diffplatform-test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    port = free_port()
    binary = shutil.which("moto_server") or str(Path(sys.executable).parent / "moto_server")
    process = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(endpoint, timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.2)
    client = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="test", aws_secret_access_key="test",
                          region_name="us-east-1")  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    yield endpoint, client
    process.terminate()
    process.wait(10)


@pytest.fixture
def s3_storage(settings, s3_endpoint):
    endpoint, client = s3_endpoint
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET, "endpoint_url": endpoint, "access_key": "test", "secret_key": "test",
                "region_name": "us-east-1", "querystring_auth": True, "file_overwrite": True,
                "default_acl": None, "addressing_style": "path", "signature_version": "s3v4",
            },
        },
    }  # fmt: skip
    return client


@pytest.mark.django_db
def test_pairs_are_written_to_the_bucket(s3_storage, user, make_pair_bytes):
    a, b, label = make_pair_bytes()
    pair = make_dataset(user, pairs=[("p", a, b, label)]).pairs.get()
    body = s3_storage.get_object(Bucket=BUCKET, Key=pair.image_b)["Body"].read()
    assert body == b
    assert not storage.is_local()


@pytest.mark.django_db
def test_media_view_redirects_the_owner_to_a_presigned_url(client, s3_storage, user, make_pair_bytes):
    a, b, label = make_pair_bytes()
    pair = make_dataset(user, pairs=[("p", a, b, label)]).pairs.get()
    client.force_login(user)
    response = client.get(reverse("experiments:media", kwargs={"key": pair.image_a}))
    assert response.status_code == 302
    url = response["Location"]
    assert "X-Amz-Signature=" in url
    assert requests.get(url, timeout=5).content == a
    unsigned = url.split("?")[0]
    assert requests.get(unsigned, timeout=5).status_code == 403


@pytest.mark.django_db
def test_media_view_gives_another_user_404_without_a_url(client, s3_storage, user, other_user, make_pair_bytes):
    pair = make_dataset(user, pairs=[("p", *make_pair_bytes())]).pairs.get()
    client.force_login(other_user)
    assert client.get(reverse("experiments:media", kwargs={"key": pair.image_a})).status_code == 404
