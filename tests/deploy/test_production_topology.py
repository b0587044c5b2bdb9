"""The production deployment on loopback: Chromium -> nginx (TLS) -> daphne, two worker machines, S3.

Built from the shipped files (tests/deploy/topology.py says how): what docker-compose.yml would run,
minus Docker, under a real host name (PUBLIC_HOST), with the web service's own health check. Proves that a person can log in over HTTPS, upload, run an experiment and follow it
live over wss with every image loading (no CSP or mixed-content error), and that a GPU worker
killed in the middle of a learned detector's task costs nothing: once it is back the run ends with
every result exactly once.
"""

import re
import time
from collections import Counter

import pytest
import redis
import requests
from django.conf import global_settings, settings
from rest_framework.authtoken.models import Token

from experiments.models import Result, Run, RunState
from experiments.runs import services as run_services
from tests.deploy.topology import BUCKET, PUBLIC_HOST, Topology, map_public_host, nginx_binary
from tests.factories import PASSWORD, UserFactory, make_dataset
from tests.live_services import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLOW = "siamese-resnet50"  # random weights: slow enough on a CPU to be killed mid-task
SLOW_PAIRS = 24


@pytest.fixture
def topology(service_env, tmp_path, settings, monkeypatch):
    if nginx_binary() is None:
        pytest.skip("Debian's nginx is not installed (make browser)")
    map_public_host(monkeypatch)
    stack = Topology(tmp_path, service_env)
    try:
        stack.start_s3()
        stack.build_static()
        stack.make_certificate()
        stack.release()
        stack.start_web()
        stack.workers = {
            "gpu": stack.start_worker("worker-gpu", "gpu-machine"),
            "cpu": stack.start_worker("worker-cpu", "cpu-machine"),
            "webhooks": stack.start_worker("worker-webhooks", "webhooks-machine"),
        }
        stack.wait_ready(*stack.workers.values())
        # compose starts nginx once the web container's own health check passes (issue 26, case 8).
        wait_until(stack.web_health_check_passes, 120, "the web service's health check")
        stack.start_nginx()
        stack.wait_healthy()
    except BaseException:
        print(stack.logs())
        stack.stop()
        raise
    # Accounts made here must log in there: production hashes passwords with Django's defaults.
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    # This process writes pairs into the same bucket the services read.
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": BUCKET, "endpoint_url": stack.s3_endpoint, "access_key": "test",
                "secret_key": "test", "region_name": "us-east-1", "querystring_auth": True,
                "file_overwrite": True, "default_acl": None, "addressing_style": "path",
                "signature_version": "s3v4",
            },
        },
    }  # fmt: skip
    yield stack
    stack.stop()


def assert_every_result_once(run, detectors, pairs):
    counts = Counter(Result.objects.filter(run=run).values_list("pair_id", "detector"))
    duplicates = {key: n for key, n in counts.items() if n > 1}
    assert not duplicates, f"results stored more than once: {duplicates}"
    assert len(counts) == len(detectors) * pairs, f"{len(counts)} results for {detectors} x {pairs} pairs"


def check_the_edge(stack: Topology):
    cert = str(stack.cert_dir / "fullchain.pem")
    plain = f"http://{PUBLIC_HOST}:{stack.http_port}"
    # Plain HTTP only redirects, even when a client claims it came over HTTPS.
    for headers in ({}, {"X-Forwarded-Proto": "https"}):
        answer = requests.get(f"{plain}/accounts/login/?next=/", headers=headers, allow_redirects=False, timeout=10)
        assert answer.status_code == 301, answer.text[:300]
        assert answer.headers["Location"] == f"{stack.origin}/accounts/login/?next=/"
    # Over HTTPS the app sees a secure request: no redirect loop, HSTS and the CSP are sent.
    login = requests.get(f"{stack.origin}/accounts/login/", verify=cert, allow_redirects=False, timeout=10)
    assert login.status_code == 200, login.status_code
    assert "max-age=" in login.headers["Strict-Transport-Security"]
    assert "img-src 'self'" in login.headers["Content-Security-Policy"]
    # A request reaching daphne without nginx's header is sent to HTTPS; the health probe is not.
    direct = f"http://{PUBLIC_HOST}:{stack.web_port}"
    assert requests.get(f"{direct}/accounts/login/", allow_redirects=False, timeout=10).status_code == 301
    assert requests.get(f"{direct}/healthz/", timeout=10).status_code == 200
    # ALLOWED_HOSTS holds the public name only, as in production: a loopback Host is refused.
    assert requests.get(f"http://127.0.0.1:{stack.web_port}/healthz/", timeout=10).status_code == 400
    # Static files come from nginx's copy (the release step's volume), hashed names and all.
    static = re.search(r'href="(/static/[^"]+\.css)"', login.text).group(1)
    asset = requests.get(f"{stack.origin}{static}", verify=cert, timeout=10)
    assert asset.status_code == 200 and "Expires" in asset.headers, asset.headers
    # Strangers learn ok / not ok per check; a staff user's token shows which worker takes each queue.
    health = requests.get(f"{stack.origin}/healthz/", verify=cert, timeout=10).json()
    assert health["checks"]["workers"] == {"ok": True} and "machine" not in str(health)
    token = Token.objects.create(user=UserFactory(is_staff=True))
    headers = {"Authorization": f"Token {token.key}"}
    health = requests.get(f"{stack.origin}/healthz/", headers=headers, verify=cert, timeout=10).json()
    assert health["checks"]["workers"]["queues"] == {
        "cpu": ["cpu@cpu-machine"], "gpu": ["gpu@gpu-machine"], "webhooks": ["webhooks@webhooks-machine"],
    }  # fmt: skip


def browse_upload_and_run(browser, stack: Topology, user, make_pair_bytes):
    context = browser.new_context(base_url=stack.origin, ignore_https_errors=True)
    context.set_default_timeout(30_000)
    page = context.new_page()
    problems, sockets, media = [], [], []
    page.on("console", lambda m: m.type in ("error", "warning") and problems.append(f"console {m.type}: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"HTTP {r.status}: {r.url}"))
    page.on("response", lambda r: f"/{BUCKET}/" in r.url and media.append((r.url, r.status)))
    page.on("websocket", lambda ws: sockets.append(ws.url))

    try:
        page.goto("/accounts/login/")
        page.fill("#id_username", user.username)
        page.fill("#id_password", PASSWORD)
        page.click("main button[type=submit]")
        page.wait_for_url(re.compile(r"/$"))
        assert "/accounts/login/" not in page.url, page.inner_text("main")

        page.click("text=Datasets")
        page.fill("#id_name", "through nginx")
        page.click("#dataset-form button[type=submit]")
        page.wait_for_url(re.compile(r"/datasets/\d+/$"))
        a, b, label = make_pair_bytes(size=64, box=(12, 12, 40, 40))
        page.set_input_files("#id_files", [
            {"name": "p0_A.png", "mimeType": "image/png", "buffer": a},
            {"name": "p0_B.png", "mimeType": "image/png", "buffer": b},
            {"name": "p0_label.png", "mimeType": "image/png", "buffer": label},
        ])  # fmt: skip
        page.wait_for_selector("#upload-preview table")
        page.click("#upload-submit")
        page.wait_for_url(re.compile(r"/import/"))
        page.click("#confirm-import")
        page.wait_for_url(re.compile(r"/datasets/\d+/$"))
        all_loaded = "(sel) => [...document.querySelectorAll(sel)].length > 0 && [...document.querySelectorAll(sel)].every(i => i.complete && i.naturalWidth > 0)"
        page.wait_for_function(all_loaded, arg="#pairs img")

        page.click("text=Compare detectors on this dataset")
        page.check("#det-absdiff")
        # A learned detector (the gpu queue, the other machine); random weights: no checkpoint is registered here.
        page.select_option("#id_weights_siamese-unet", "random")
        page.check("#det-siamese-unet")
        page.fill("#id_input_size", "64")
        page.press("#id_input_size", "Tab")
        page.click("#experiment-form button[type=submit]")
        page.wait_for_url(re.compile(r"/runs/\d+/$"))
        run_id = int(re.search(r"/runs/(\d+)/", page.url).group(1))
        page.evaluate("() => { window.__sameDocument = true; }")
        page.wait_for_function(
            "() => document.getElementById('run-state').textContent === 'succeeded'", timeout=120_000
        )
        page.wait_for_selector("#leaderboard-table")
        assert page.evaluate("() => window.__sameDocument") is True, "the page reloaded instead of following live"

        page.click("#gallery-link")
        page.wait_for_url(re.compile(r"/gallery/"))
        page.wait_for_function(all_loaded, arg="[data-gallery-item] img")
        page.keyboard.press("ArrowRight")
        page.keyboard.press("Enter")
        page.wait_for_url(re.compile(r"/pairs/\d+/"))
        page.wait_for_function(all_loaded, arg="img")
        page.wait_for_load_state("networkidle")
    finally:
        context.close()
    assert problems == [], "\n".join(problems)
    assert sockets and all(url.startswith(f"wss://{PUBLIC_HOST}:{stack.https_port}/ws/") for url in sockets), sockets
    assert media and all(status == 200 for _, status in media), media
    assert all(url.startswith(f"{stack.origin}/{BUCKET}/") and "X-Amz-Signature=" in url for url, _ in media), media
    return Run.objects.get(pk=run_id)


def kill_the_gpu_worker_mid_task(stack: Topology, user, make_pair_bytes):
    pairs = [(f"s{i:02d}", *make_pair_bytes(seed=i)) for i in range(SLOW_PAIRS)]
    experiment = run_services.experiment_create(
        owner=user, dataset=make_dataset(user, name="slow", pairs=pairs), name="killed",
        detectors=["absdiff", SLOW], detector_weights={SLOW: "random"}, input_size=160,
    )  # fmt: skip
    run = run_services.run_start(experiment=experiment)

    def slow_results():
        return Result.objects.filter(run=run, detector=SLOW).count()

    wait_until(lambda: slow_results() >= 8, 120, f"{SLOW} results on the gpu machine")
    stack.workers["gpu"].kill()  # the whole machine: parent and pool child, no acknowledgement
    partial = slow_results()
    assert partial < SLOW_PAIRS, "the kill must land while the learned detector's task runs"
    # The broker hands the unacknowledged task out again once its visibility timeout has passed
    # since it was delivered; the machine comes back (same disk) after that, as a rebooted one would.
    unacked = redis.Redis.from_url(settings.REDIS_URL).zrange(f"{settings.KEY_NAMESPACE}:celery:unacked_index", 0, -1,
                                                               withscores=True)  # fmt: skip
    assert len(unacked) == 1, f"the killed task is not waiting for redelivery: {unacked}"
    time.sleep(max(0.0, unacked[0][1] + int(stack.env["CELERY_VISIBILITY_TIMEOUT"]) + 1 - time.time()))
    stack.workers["gpu"] = stack.start_worker("worker-gpu", "gpu-machine")
    stack.wait_ready(stack.workers["gpu"])
    wait_until(lambda: Run.objects.get(pk=run.pk).is_finished, 150, "the run after the gpu machine came back")
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.error
    assert_every_result_once(run, ["absdiff", SLOW], SLOW_PAIRS)


def test_production_topology_serves_runs_live_and_survives_a_killed_worker(topology, browser, make_pair_bytes):
    assert topology.env["DIFFPLATFORM_KEY_NAMESPACE"] == settings.KEY_NAMESPACE
    user = UserFactory()
    try:
        check_the_edge(topology)
        browsed = browse_upload_and_run(browser, topology, user, make_pair_bytes)
        assert browsed.state == RunState.SUCCEEDED, browsed.error
        assert_every_result_once(browsed, ["absdiff", "siamese-unet"], 1)
        kill_the_gpu_worker_mid_task(topology, user, make_pair_bytes)
    except BaseException:
        print(topology.logs())
        raise
