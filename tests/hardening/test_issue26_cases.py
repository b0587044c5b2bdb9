"""Issue 26's numbered cases that other files show in process, here over HTTP against the real
stack (daphne, a real Celery worker, real Redis): case 4 with a worker running, case 5 (webhook
URLs) and case 7 (the anonymous health answer). Each meets a clear 4xx or a refused state with its
reason; every process is alive afterwards; no row, file or queued task is left behind. Cases 1 to 3
are in test_untrusted_models.py, case 6 in test_auth_throttle.py, case 8's items in the files
docs/reliability.md names."""

import pytest
import requests
from rest_framework.authtoken.models import Token

from experiments import outbox, storage
from experiments.models import Experiment, ImagePair, WebhookDelivery
from tests.factories import make_dataset
from tests.hardening.bad_inputs import GOOD_LEVIR as GOOD_PAIR
from tests.hardening.bad_inputs import zip_entries as zip_of
from tests.hardening.test_archives import current_rss_mib, peak_rss_mib
from tests.hardening.test_bad_input import queued_tasks
from tests.hardening.test_untrusted_models import unacknowledged
from tests.hardening.test_webhooks_ssrf import ISSUE_URLS, UNSEEN_URLS, Receiver
from tests.live_services import start_daphne, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(user, staff_user, celery_workers, service_env, tmp_path):
    service_env["HEALTH_CACHE_S"] = "0"
    worker = celery_workers.start()
    server, base = start_daphne(service_env, tmp_path)

    def session(who):
        client = requests.Session()
        client.headers["Authorization"] = f"Token {Token.objects.create(user=who).key}"
        return client

    yield {"worker": worker, "server": server, "base": base, "api": session(user), "staff": session(staff_user)}
    server.stop()


def alive(stack) -> bool:
    return stack["worker"].process.poll() is None and stack["server"].process.poll() is None


def test_case_4_with_a_worker_running_is_refused_with_bounded_memory_and_leaves_nothing(stack, user):
    dataset = make_dataset(user)
    base, api, pid = stack["base"], stack["api"], stack["server"].process.pid
    api.get(f"{base}/api/v1/datasets/", timeout=30)  # warm
    idle = current_rss_mib(pid)
    with open(f"/proc/{pid}/clear_refs", "w") as refs:
        refs.write("5")
    archive = zip_of(GOOD_PAIR, directories=300_000)
    response = api.post(f"{base}/api/v1/datasets/{dataset.pk}/import/",
                        files={"file": ("case4.zip", archive, "application/zip")}, timeout=120)  # fmt: skip
    assert response.status_code == 422 and "at most 20,000 are accepted" in response.json()["error"]["message"]
    assert peak_rss_mib(pid) - idle < 100
    assert alive(stack)
    assert (ImagePair.objects.count(), storage.list_all_keys(), queued_tasks(), unacknowledged()) == (0, [], 0, 0)


def test_case_5_internal_webhook_urls_are_refused_over_http_and_by_the_worker(stack, user, make_pair_bytes):
    base, api = stack["base"], stack["api"]
    dataset = make_dataset(user, pairs=[("p0", *make_pair_bytes())])
    for url in ISSUE_URLS + UNSEEN_URLS[:6]:
        response = api.post(f"{base}/api/v1/experiments/", timeout=30,
                            json={"dataset": dataset.pk, "detectors": ["absdiff"], "webhook_url": url})  # fmt: skip
        assert response.status_code == 422, (url, response.text)
        assert "not a public address" in response.json()["error"]["fields"]["webhook_url"][0]
    assert not Experiment.objects.exists() and queued_tasks() == 0

    # A delivery whose address is internal by the time it is sent (the worker allows no private address).
    receiver = Receiver()
    try:
        delivery = WebhookDelivery.objects.create(owner=user, url=f"http://127.0.0.1:{receiver.port}/",
                                                  event="run.finished", payload={"run": 1})  # fmt: skip
        outbox.send_webhook(delivery.pk)
        wait_until(lambda: WebhookDelivery.objects.get(pk=delivery.pk).state != "pending", 60, "the delivery",
                   stack["worker"])  # fmt: skip
        assert receiver.requests == []  # nothing was sent
    finally:
        receiver.close()
    [listed] = api.get(f"{base}/api/v1/webhooks/deliveries/", timeout=30).json()["results"]
    assert (listed["state"], listed["last_error"]) == ("refused", "refused: not a public address")
    assert alive(stack)
    wait_until(lambda: unacknowledged() == 0, 10, "the acknowledgement")
    assert queued_tasks() == 0 and not WebhookDelivery.objects.filter(enqueue_pending=True).exists()


def test_case_7_strangers_see_ok_per_check_and_staff_see_the_detail(stack):
    """Worker host names and a failed check's exception text are shown in process in test_health.py
    (asking workers takes the server's health check past start_daphne's one-second probe); here the
    real server: strangers get ok per check, staff the detail."""
    base = stack["base"]
    for client in (requests, stack["api"]):  # anonymous, and a user who is not staff
        response = client.get(f"{base}/healthz/", timeout=30)
        assert response.status_code == 200
        checks = response.json()["checks"]
        assert checks and all(check == {"ok": True} for check in checks.values()), checks
    detail = stack["staff"].get(f"{base}/healthz/", timeout=30).json()["checks"]
    assert detail["database"]["vendor"] and "ms" in detail["database"]
    assert alive(stack)
