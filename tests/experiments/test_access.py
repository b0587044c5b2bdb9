"""Per-user isolation of pages and media: owners see their things, others get 404."""

import pytest
from django.urls import reverse

from experiments.runs import services as run_services
from tests.factories import make_dataset


@pytest.fixture
def owned(user, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    run = run_services.run_start(experiment=experiment)
    return {"dataset": dataset, "run": run, "pair": dataset.pairs.get()}


def pages(owned):
    return [
        reverse("experiments:dataset_detail", args=[owned["dataset"].pk]),
        reverse("experiments:run_detail", args=[owned["run"].pk]),
        reverse("experiments:run_status", args=[owned["run"].pk]),
        reverse("experiments:media", kwargs={"key": owned["pair"].image_a}),
        reverse("experiments:media", kwargs={"key": owned["pair"].label}),
    ]


@pytest.mark.django_db
def test_owner_reads_their_pages_and_media(client, user, owned):
    client.force_login(user)
    for url in pages(owned):
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_another_user_gets_404_everywhere(client, other_user, owned):
    client.force_login(other_user)
    for url in pages(owned):
        assert client.get(url).status_code == 404, url
    for action in ("run_cancel", "run_retry", "run_clone"):
        assert client.post(reverse(f"experiments:{action}", args=[owned["run"].pk])).status_code == 404


@pytest.mark.django_db
def test_anonymous_is_sent_to_log_in(client, owned):
    for url in pages(owned):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"], url


@pytest.mark.django_db
def test_staff_may_read_everything(client, staff_user, owned):
    client.force_login(staff_user)
    for url in pages(owned):
        assert client.get(url).status_code == 200, url


@pytest.mark.django_db
def test_media_view_refuses_path_tricks(client, user, owned):
    client.force_login(user)
    key = f"datasets/{owned['dataset'].pk}/../../etc/passwd"
    assert client.get(reverse("experiments:media", kwargs={"key": key})).status_code == 404


@pytest.mark.django_db
def test_media_files_are_served_with_their_bytes(client, user, owned):
    client.force_login(user)
    response = client.get(reverse("experiments:media", kwargs={"key": owned["pair"].image_a}))
    body = b"".join(response.streaming_content)
    assert body[:8] == b"\x89PNG\r\n\x1a\n"
