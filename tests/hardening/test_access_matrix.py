"""Every URL pattern and WebSocket route, checked for anonymous, owner, another user and staff.

A new route without a rule in RULES fails `test_every_route_has_a_rule`, so access control cannot
be forgotten. Objects belong to the owner; "another user" must learn nothing (404).
"""

import asyncio
import io
import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from experiments.live.routing import websocket_urlpatterns
from experiments.models import BatchJob, ModelCheckpoint, PredictionSet, TrainingJob, UploadedModel
from experiments.runs import services as run_services
from tests.factories import make_dataset, run_in_process

PUBLIC, LOGIN, OWNER, STAFF = "public", "login", "owner", "staff"

# name (or route for unnamed patterns) -> (rule, method, argument names)
RULES = {
    "healthz": (PUBLIC, "get", ()),
    "accounts:login": (PUBLIC, "get", ()),
    "accounts:sign_up": (PUBLIC, "get", ()),
    "accounts:api_token": (LOGIN, "get", ()),
    "api-schema": (PUBLIC, "get", ()),
    "api-docs": (PUBLIC, "get", ()),
    "api:token": (PUBLIC, "post", ()),
    "api:detector-list": (LOGIN, "get", ()),
    "api:dataset-list": (LOGIN, "get", ()),
    "api:experiment-list": (LOGIN, "get", ()),
    "api:checkpoint-list": (LOGIN, "get", ()),
    "api:training-list": (LOGIN, "get", ()),
    "api:batch-list": (LOGIN, "get", ()),
    "api:diff": (LOGIN, "post", ()),
    "api:dataset-detail": (OWNER, "get", ("dataset",)),
    "api:dataset-pairs": (OWNER, "get", ("dataset",)),
    "api:dataset-import": (OWNER, "post", ("dataset",)),
    "api:dataset-leakage": (OWNER, "post", ("dataset",)),
    "api:dataset-predictions": (OWNER, "get", ("dataset",)),
    "api:dataset-prediction-detail": (OWNER, "get", ("dataset", "predictions")),
    "api:experiment-detail": (OWNER, "get", ("experiment",)),
    "api:experiment-runs": (OWNER, "post", ("experiment",)),
    "api:run-detail": (OWNER, "get", ("run",)),
    "api:run-cancel": (OWNER, "post", ("run",)),
    "api:run-retry": (OWNER, "post", ("run",)),
    "api:run-clone": (OWNER, "post", ("run",)),
    "api:run-ws-ticket": (OWNER, "post", ("run",)),
    "api:run-leaderboard": (OWNER, "get", ("run",)),
    "api:run-thesis-table": (OWNER, "get", ("run",)),
    "api:run-list": (LOGIN, "get", ()),
    "api:compare": (LOGIN, "get", ()),
    "api:benchmarks": (LOGIN, "get", ()),
    "api:model-list": (LOGIN, "get", ()),
    "api:model-detail": (OWNER, "get", ("model",)),
    "api:model-claims": (OWNER, "get", ("model",)),
    "api:checkpoint-claims": (OWNER, "get", ("checkpoint",)),
    "api:dataset-prediction-claims": (OWNER, "get", ("dataset", "predictions")),
    "api:run-report-md": (OWNER, "get", ("run",)),
    "api:run-report-tex": (OWNER, "get", ("run",)),
    "api:run-report-html": (OWNER, "get", ("run",)),
    "api:run-chart": (OWNER, "get", ("run", "chart")),
    "api:webhook-secret": (LOGIN, "get", ()),
    "api:webhook-deliveries": (LOGIN, "get", ()),
    "api:run-results": (OWNER, "get", ("run",)),
    "api:run-leakage": (OWNER, "get", ("run",)),
    "api:training-detail": (OWNER, "get", ("training",)),
    "api:training-cancel": (OWNER, "post", ("training",)),
    "api:batch-detail": (OWNER, "get", ("batch",)),
    "api:batch-archive": (OWNER, "get", ("batch",)),
    "api:media": (OWNER, "get", ("media",)),
    "api/v1/^": (LOGIN, "get", ()),  # the JSON 404 for unknown API paths
    "experiments:dashboard": (LOGIN, "get", ()),
    "experiments:dataset_list": (LOGIN, "get", ()),
    "experiments:experiment_create": (LOGIN, "get", ()),
    "experiments:runs_status": (LOGIN, "get", ()),
    "experiments:training_list": (LOGIN, "get", ()),
    "experiments:dataset_detail": (OWNER, "get", ("dataset",)),
    "experiments:dataset_upload": (OWNER, "post", ("dataset",)),
    "experiments:dataset_leakage_audit": (OWNER, "post", ("dataset",)),
    "experiments:dataset_import": (OWNER, "get", ("dataset", "token")),
    "experiments:dataset_import_confirm": (OWNER, "post", ("dataset", "token")),
    "experiments:prediction_upload": (OWNER, "post", ("dataset",)),
    "experiments:prediction_delete": (OWNER, "get", ("dataset", "predictions")),
    "experiments:experiment_list": (LOGIN, "get", ()),
    "experiments:experiment_detail": (OWNER, "get", ("experiment",)),
    "experiments:run_list": (LOGIN, "get", ()),
    "experiments:compare": (LOGIN, "get", ()),
    "experiments:benchmarks": (LOGIN, "get", ()),
    "experiments:model_list": (LOGIN, "get", ()),
    "experiments:model_delete": (OWNER, "get", ("model",)),
    "experiments:run_detail": (OWNER, "get", ("run",)),
    "experiments:run_results": (OWNER, "get", ("run",)),
    "experiments:run_export": (OWNER, "get", ("run", "fmt")),
    "experiments:run_threshold": (OWNER, "get", ("run",)),
    "experiments:run_report": (OWNER, "get", ("run", "report")),
    "experiments:run_chart": (OWNER, "get", ("run", "chart")),
    "experiments:run_gallery": (OWNER, "get", ("run",)),
    "experiments:pair_detail": (OWNER, "get", ("run", "pair")),
    "experiments:run_status": (OWNER, "get", ("run",)),
    "experiments:run_cancel": (OWNER, "post", ("run",)),
    "experiments:run_retry": (OWNER, "post", ("run",)),
    "experiments:run_clone": (OWNER, "post", ("run",)),
    "experiments:training_detail": (OWNER, "get", ("training",)),
    "experiments:training_status": (OWNER, "get", ("training",)),
    "experiments:training_cancel": (OWNER, "post", ("training",)),
    "experiments:media": (OWNER, "get", ("media",)),
    "experiments:dataset_delete": (OWNER, "get", ("dataset",)),
    "experiments:experiment_delete": (OWNER, "get", ("experiment",)),
    "experiments:run_delete": (OWNER, "get", ("run",)),
    "experiments:checkpoint_delete": (OWNER, "get", ("checkpoint",)),
    "admin:index": (STAFF, "get", ()),
    "accounts:logout": (LOGIN, "post", ()),  # last: it ends the sessions the other checks use
}
ADMIN_ROUTE_PREFIX = "admin/"
WEBSOCKET_RULES = {
    "ws/runs/<int:run_id>/": "run",
    "ws/training/<int:job_id>/": "training",
    "ws/notifications/": LOGIN,  # per user: each signed-in user hears only their own group
}


def all_routes(patterns=None, prefix="", namespace=""):
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(pattern, URLResolver):
            inner = namespace + (f"{pattern.namespace}:" if pattern.namespace else "")
            yield from all_routes(pattern.url_patterns, prefix + str(pattern.pattern), inner)
        elif isinstance(pattern, URLPattern):
            route = prefix + str(pattern.pattern)
            yield (namespace + pattern.name) if pattern.name else route, route


def test_every_route_has_a_rule():
    missing = [key for key, route in all_routes() if key not in RULES and not route.startswith(ADMIN_ROUTE_PREFIX)]
    assert missing == [], f"routes without an access rule: {missing}"
    ws_missing = [str(p.pattern) for p in websocket_urlpatterns if str(p.pattern) not in WEBSOCKET_RULES]
    assert ws_missing == []


@pytest.fixture
def world(user, other_user, staff_user, make_pair_bytes, monkeypatch, django_capture_on_commit_callbacks):
    monkeypatch.setattr("experiments.outbox.dispatch", lambda model, object_id: True)
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(2)])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    run = run_in_process(run_services.run_start(experiment=experiment))
    training = TrainingJob.objects.create(owner=user, detector="siamese-unet", dataset=dataset, config={})
    batch_experiment = run_services.experiment_create(owner=user, dataset=dataset, name="b", detectors=["absdiff"])
    batch_run = run_services.run_start(experiment=batch_experiment)
    batch = BatchJob.objects.create(owner=user, payload_sha256="0" * 64, detectors=["absdiff"], run=batch_run)
    owner = Client()
    owner.force_login(user)
    a, b, _ = make_pair_bytes(seed=9)
    files = [io.BytesIO(a), io.BytesIO(b)]
    files[0].name, files[1].name = "new_A.png", "new_B.png"
    response = owner.post(reverse("experiments:dataset_upload", args=[dataset.pk]), {"files": files})
    token = response["Location"].rstrip("/").split("/")[-1]
    args = {
        "dataset": dataset.pk, "experiment": experiment.pk, "run": run.pk, "training": training.pk,
        "batch": batch.pk, "pair": dataset.pairs.first().pk, "token": token, "fmt": "csv", "report": "html",
        "chart": "pr.svg",
        "media": run.results.first().heatmap_key,
        "predictions": PredictionSet.objects.create(owner=user, dataset=dataset, name="theirs", kind="mask").pk,
        "checkpoint": ModelCheckpoint.objects.create(owner=user, detector="siamese-unet", file_key="k", sha256="0").pk,
        "model": UploadedModel.objects.create(
            owner=user, name="m", file_key="k", sha256="0" * 64, size_bytes=1, mean=[0, 0, 0], std=[1, 1, 1],
            inputs="two", output="probability", state="rejected", reason="test",
        ).pk,
    }  # fmt: skip
    clients = {"owner": owner}
    for role, account in (("other", other_user), ("staff", staff_user)):
        clients[role] = Client()
        clients[role].force_login(account)
    clients["anonymous"] = Client()
    return {"args": args, "clients": clients}


def url_for(name, arg_names, args):
    if name == "api/v1/^":
        return "/api/v1/no-such-thing/"
    kwargs = {}
    for arg in arg_names:
        key = {"dataset": "pk", "experiment": "pk", "run": "pk", "training": "pk", "batch": "pk", "media": "key",
               "pair": "pair_pk", "token": "token", "fmt": "fmt", "predictions": "set_pk", "report": "fmt",
               "chart": "name", "checkpoint": "pk", "model": "pk"}[arg]  # fmt: skip
        kwargs[key] = args[arg]
    return reverse(name, kwargs=kwargs)


def expected_ok(status):
    return status < 400 or status in (400, 405, 409, 415, 422)  # reached the view: input or state errors only


@pytest.mark.django_db
def test_the_access_matrix_holds_for_every_route(world):
    failures = []
    checked = 0
    for name, (rule, method, arg_names) in RULES.items():
        url = url_for(name, arg_names, world["args"])
        is_api = url.startswith("/api/v1/")
        for role, client in world["clients"].items():
            response = getattr(client, method)(url)
            status = response.status_code
            checked += 1
            if name == "api/v1/^":  # unknown API paths: the same JSON 404 for everyone
                ok = status == 404 and response.json()["error"]["status"] == 404
            elif rule == PUBLIC:
                ok = status < 500 and status not in (401, 403, 404)
            elif role == "anonymous":
                ok = status == 401 if is_api else (status == 302 and "login" in response.get("Location", ""))
            elif rule == STAFF:
                ok = status == 200 if role == "staff" else status == 302
            elif rule == OWNER and role == "other":
                ok = status == 404
            else:
                ok = expected_ok(status) and status != 404
            if not ok:
                failures.append(f"{role:9} {method.upper():4} {url} -> {status} (rule {rule})")
    assert failures == [], "\n".join(failures)
    assert checked == len(RULES) * 4


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", sorted(WEBSOCKET_RULES))
def test_websocket_routes_admit_only_owner_and_staff(route, world):
    from diffplatform.asgi import application

    kind = WEBSOCKET_RULES[route]
    path = "/" + route.replace("<int:run_id>", str(world["args"]["run"])).replace(
        "<int:job_id>", str(world["args"]["training"])
    )

    async def attempt(client):
        headers = [(b"origin", b"http://testserver")]
        if client is not None:
            cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
            headers.append((b"cookie", cookie.encode()))
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        first = json.loads(await communicator.receive_from(timeout=5)) if connected else None
        await communicator.disconnect()
        return connected, first

    def in_own_loop(client):
        # A thread of its own: the browser tests may leave an event loop running in this one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, attempt(client)).result()

    outcomes = {role: in_own_loop(client if role != "anonymous" else None) for role, client in world["clients"].items()}
    assert outcomes["anonymous"][0] is False
    if kind == LOGIN:
        for role in ("owner", "other", "staff"):
            connected, first = outcomes[role]
            assert connected, role
            assert first == {"type": "ready", "user": int(world["clients"][role].session["_auth_user_id"])}
        return
    assert outcomes["other"][0] is False
    for role in ("owner", "staff"):
        connected, snapshot = outcomes[role]
        assert connected, role
        assert snapshot["type"] == "snapshot"
        assert snapshot["run" if kind == "run" else "job"] == world["args"][kind]
