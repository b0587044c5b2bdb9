"""Issue 26: the per-user storage quota is checked and taken in one step. Two uploads at the same
moment, each fitting alone but not together, cannot both pass: one is stored, the other answers 413
and leaves nothing behind. The interleaving is forced: both uploads have reserved before either
reads what is stored (the read that the check and the store were racing on)."""

import io
import threading

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from rest_framework.test import APIClient

from experiments import quotas, storage
from experiments.models import ImagePair
from tests.factories import make_dataset
from tests.hardening.bad_inputs import GOOD_LEVIR as GOOD_PAIR
from tests.hardening.test_storage_lifecycle import api_for, big_png

MB = 1024 * 1024


@pytest.fixture
def both_read_together(monkeypatch):
    """Each upload thread's first read of the storage used waits until the other thread reads too."""
    barrier, seen = threading.Barrier(2, timeout=30), threading.local()
    original = quotas.storage_used

    def storage_used(user):
        if threading.current_thread() is not threading.main_thread() and not getattr(seen, "once", False):
            seen.once = True
            barrier.wait()
        return original(user)

    monkeypatch.setattr(quotas, "storage_used", storage_used)


@pytest.mark.django_db(transaction=True)
def test_two_uploads_at_the_same_moment_cannot_both_pass_the_quota(settings, user, both_read_together):
    settings.USER_STORAGE_QUOTA_MB = 2  # each pair is about 1.4 MB: one fits, two do not
    dataset = make_dataset(user)
    token, answers = api_for(user)._credentials, {}

    def upload(name: str, seed: int):
        api = APIClient()
        api.credentials(**token)  # a client per thread, as two browsers would be
        answers[name] = api.post(
            f"/api/v1/datasets/{dataset.pk}/pairs/",
            {"name": name, "image_a": io.BytesIO(big_png(seed)), "image_b": io.BytesIO(GOOD_PAIR["B/p.png"])},
            format="multipart",
        )

    threads = [threading.Thread(target=upload, args=(f"p{i}", i)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    statuses = sorted(response.status_code for response in answers.values())
    assert statuses == [201, 413], {name: r.content[:300] for name, r in answers.items()}
    refused = next(r for r in answers.values() if r.status_code == 413)
    assert "storage quota" in refused.json()["error"]["message"]
    [stored] = ImagePair.objects.filter(dataset=dataset)
    assert sorted(storage.list_all_keys(f"datasets/{dataset.pk}")) == sorted([stored.image_a, stored.image_b])
    assert quotas._counter_add(user.pk, 0)[0] == 0  # both reservations given back
    assert quotas.storage_used(user) <= 2 * MB


@pytest.mark.django_db(transaction=True)
def test_with_redis_down_reservations_are_kept_in_the_process(settings, user, monkeypatch):
    settings.USER_STORAGE_QUOTA_MB = 2

    def unavailable(*args, **kwargs):
        raise RedisConnectionError("Redis is down")

    monkeypatch.setattr(quotas.cache._cache, "get_client", unavailable)
    first = quotas.quota_reserve(user=user, adding=int(1.4 * MB))
    with pytest.raises(quotas.QuotaExceeded, match="storage quota"):
        quotas.quota_reserve(user=user, adding=int(1.4 * MB))
    first.release()
    quotas.quota_reserve(user=user, adding=int(1.4 * MB)).release()  # room again once released
    assert quotas._counter_add(user.pk, 0)[::2] == (0, True)
