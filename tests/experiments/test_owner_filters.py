"""Batch jobs and webhook deliveries are read through the one owner rule (`experiments.visibility.owned_by`)."""

import pytest
from django.contrib.auth.models import AnonymousUser

from experiments.batches.selectors import batches_visible_to, own_batches
from experiments.models import BatchJob, WebhookDelivery
from experiments.notifications.selectors import own_deliveries


@pytest.fixture
def batches(user, other_user):
    return {
        owner.pk: BatchJob.objects.create(owner=owner, payload_sha256="0" * 64, detectors=["absdiff"])
        for owner in (user, other_user)
    }


def test_an_owner_sees_their_own_batch_jobs_only(user, batches):
    assert list(batches_visible_to(user)) == [batches[user.pk]]
    assert list(own_batches(user)) == [batches[user.pk]]


def test_staff_may_open_any_batch_job_but_their_list_holds_their_own(staff_user, batches):
    assert set(batches_visible_to(staff_user)) == set(batches.values())
    mine = BatchJob.objects.create(owner=staff_user, payload_sha256="1" * 64, detectors=["absdiff"])
    assert list(own_batches(staff_user)) == [mine]


def test_anonymous_users_see_no_batch_job_and_no_delivery(batches):
    assert not batches_visible_to(AnonymousUser()).exists()
    assert not own_batches(AnonymousUser()).exists()
    assert not own_deliveries(AnonymousUser()).exists()


def test_webhook_deliveries_are_listed_to_their_owner_only(user, other_user, staff_user):
    deliveries = {
        owner.pk: WebhookDelivery.objects.create(
            owner=owner, url="https://example.org/hook", event="run.finished", payload={}
        )
        for owner in (user, other_user)
    }
    assert list(own_deliveries(user)) == [deliveries[user.pk]]
    assert list(own_deliveries(other_user)) == [deliveries[other_user.pk]]
    assert not own_deliveries(staff_user).exists()
