"""Bring your own model (ONNX): upload with its contract, validation by the worker's task (run here,
in-process, with the real onnx and onnxruntime), detector `onnx:<name>` in a real run whose maps equal
onnxruntime's own output, refusals that leave nothing behind, per-user isolation, the page."""

import io
import pickle

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper
from scipy.special import expit

from experiments import storage
from experiments.errors import ServiceError
from experiments.models import Result, UploadedModel
from experiments.onnx_models import tasks
from experiments.runs import engine
from experiments.runs import services as run_services
from tests.api.conftest import upload
from tests.conftest import png_bytes
from tests.factories import PASSWORD, make_dataset, run_in_process

pytestmark = pytest.mark.django_db

MEAN, STD = (0.40, 0.45, 0.50), (0.20, 0.25, 0.30)
CONTRACT = {
    "input_size": "any",
    "mean": "0.40,0.45,0.50",
    "std": "0.20, 0.25, 0.30",
    "inputs": "two",
    "output": "logits",
}


# --------------------------------------------------------------------------- models under test
class Siamese(torch.nn.Module):
    """A small fully convolutional siamese change detector: shared encoder, |difference|, head -> logits."""

    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, a, b):
        return self.head(torch.abs(self.encoder(a) - self.encoder(b)))


class Concat6(torch.nn.Module):
    """One 6-channel input, a probability out (the sigmoid inside the graph), fixed 32 px."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.conv = torch.nn.Conv2d(6, 1, 3, padding=1)

    def forward(self, x):
        return torch.sigmoid(self.conv(x))[:, 0]  # 1 x H x W


def export(module, example, *, dynamic=True, names=("a", "b")) -> bytes:
    buffer = io.BytesIO()
    axes = {name: {2: "height", 3: "width"} for name in names} | {"out": {-2: "height", -1: "width"}}
    torch.onnx.export(
        module.eval(), example, buffer, input_names=list(names), output_names=["out"], opset_version=17,
        dynamic_axes=axes if dynamic else None, dynamo=False,
    )  # fmt: skip
    return buffer.getvalue()


@pytest.fixture(scope="module")
def siamese_onnx() -> bytes:
    return export(Siamese(), (torch.zeros(1, 3, 64, 64), torch.zeros(1, 3, 64, 64)))


@pytest.fixture(scope="module")
def concat6_onnx() -> bytes:
    return export(Concat6(), (torch.zeros(1, 6, 32, 32),), dynamic=False, names=("ab",))


def graph_model(nodes, output_shape, *, domains=(("", 17),), extra_initializers=()) -> bytes:
    """A hand-built graph taking A and B (1 x 3 x h x w float32)."""
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, "h", "w"]) for n in ("a", "b")]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, output_shape)
    graph = helper.make_graph(nodes, "g", inputs, [output], initializer=list(extra_initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in domains])
    model.ir_version = 8
    return model.SerializeToString()


def custom_domain_onnx() -> bytes:
    nodes = [
        helper.make_node("Sub", ["a", "b"], ["d"]),
        helper.make_node("ChangeHead", ["d"], ["out"], domain="com.example"),
    ]
    return graph_model(nodes, [1, 1, "h", "w"], domains=(("", 17), ("com.example", 1)))


def wrong_shape_onnx() -> bytes:
    return graph_model([helper.make_node("Sub", ["a", "b"], ["out"])], [1, 3, "h", "w"])  # 3 maps, not 1


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def queued(monkeypatch):
    """Validation tasks sent on commit (ids), instead of the broker."""
    sent = []
    monkeypatch.setattr("experiments.outbox.send_model_validation", sent.append)
    return sent


def post_model(api, data: bytes, filename="model.onnx", **fields):
    body = {**CONTRACT, "name": "siam", **fields, "file": upload(filename, data, "application/octet-stream")}
    return api.post("/api/v1/models/", {k: v for k, v in body.items() if v is not None}, format="multipart")


def upload_and_validate(api, data, queued, capture, **fields) -> dict:
    with capture(execute=True):
        response = post_model(api, data, **fields)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] == "validating" and queued == [body["id"]]
    tasks.validate_model(queued.pop())  # what the worker runs, in-process: the real onnx and onnxruntime
    return api.get(f"/api/v1/models/{body['id']}/").json()


def detector_names(client) -> set[str]:
    return {detector["name"] for detector in client.get("/api/v1/detectors/").json()}


def nothing_left() -> tuple:
    return UploadedModel.objects.count(), [key for key in storage.list_all_keys() if key.startswith("models/")]


def rgb(height, width, seed) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def reference_inputs(image: np.ndarray) -> np.ndarray:
    """The contract written out independently: RGB / 255, minus mean, over std, NCHW float32."""
    x = (image.astype(np.float64) / 255.0 - np.array(MEAN)) / np.array(STD)
    return x.transpose(2, 0, 1)[None].astype(np.float32)


# --------------------------------------------------------------------------- the done-when
def test_an_exported_siamese_model_runs_in_an_experiment_and_equals_onnxruntime(
    api, user, siamese_onnx, concat6_onnx, queued, django_capture_on_commit_callbacks, monkeypatch
):
    siam = upload_and_validate(api, siamese_onnx, queued, django_capture_on_commit_callbacks)
    assert siam["state"] == "ready", siam["reason"]
    assert siam["detector"] == "onnx:siam" and siam["probe"]["probe_size"] == [64, 96]
    assert siam["probe"]["params"] == sum(p.numel() for p in Siamese().parameters())
    cat = upload_and_validate(
        api, concat6_onnx, queued, django_capture_on_commit_callbacks,
        name="cat", input_size="32", inputs="concat6", output="probability",
    )  # fmt: skip
    assert cat["state"] == "ready", cat["reason"]
    listed = detector_names(api)
    assert {"onnx:siam", "onnx:cat"} <= listed

    images = {"square": (rgb(32, 32, 1), rgb(32, 32, 2)), "wide": (rgb(40, 56, 3), rgb(40, 56, 4))}
    label = png_bytes(np.zeros((32, 32), np.uint8))
    pairs = [(n, png_bytes(a), png_bytes(b), label if a.shape[0] == 32 else None) for n, (a, b) in images.items()]
    dataset = make_dataset(user, pairs=pairs)
    experiment = run_services.experiment_create(
        owner=user, dataset=dataset, name="own", detectors=["onnx:siam", "onnx:cat"], threshold=0.5
    )
    maps = {}
    original = engine.build_result_entry

    def keep_map(key, item, prob, threshold):  # the exact map the engine stores its pictures and metrics from
        maps[(item.pair.name, key)] = prob.copy()
        return original(key, item, prob, threshold)

    monkeypatch.setattr(engine, "build_result_entry", keep_map)
    run = run_in_process(run_services.run_start(experiment=experiment))
    assert run.state == "succeeded", run.error

    siam_session = ort.InferenceSession(siamese_onnx, providers=["CPUExecutionProvider"])
    cat_session = ort.InferenceSession(concat6_onnx, providers=["CPUExecutionProvider"])
    for name, (a, b) in images.items():
        results = {r.detector: r for r in Result.objects.filter(run=run, pair__name=name)}
        # onnx:siam runs at B's size: onnxruntime's logits through a sigmoid are the map, pixel for pixel
        logits = siam_session.run(None, {"a": reference_inputs(a), "b": reference_inputs(b)})[0]
        expected = expit(logits[0, 0].astype(np.float64))
        stored = _map_of(maps, name, results["onnx:siam"])
        assert stored.shape == b.shape[:2] and stored.dtype == np.float32
        np.testing.assert_allclose(stored, expected, atol=1e-5, rtol=0)
        assert results["onnx:siam"].metrics["changed_fraction"] == pytest.approx(float((expected >= 0.5).mean()))
        # onnx:cat runs at 32 px: A and B shrunk (area), one 6-channel tensor, the map enlarged back (bilinear)
        small = [
            cv2.resize(x, (32, 32), interpolation=cv2.INTER_AREA) if x.shape[:2] != (32, 32) else x for x in (a, b)
        ]
        prob = cat_session.run(None, {"ab": np.concatenate([reference_inputs(x) for x in small], axis=1)})[0][0]
        expected = (
            cv2.resize(prob, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_LINEAR) if name == "wide" else prob
        )
        np.testing.assert_allclose(_map_of(maps, name, results["onnx:cat"]), np.clip(expected, 0, 1), atol=1e-5, rtol=0)

    # measured like a built-in: latency, memory, provenance = the file's sha256
    assert run.environment["weights"]["onnx:siam"] == "onnx"
    assert run.environment["weights_sha256"]["onnx:siam"] == siam["sha256"]
    for result in Result.objects.filter(run=run):
        assert result.weights == "onnx" and result.latency_ms > 0 and result.peak_memory_mb > 0


def _map_of(maps, pair_name, result) -> np.ndarray:
    key = result.heatmap_key.split("/")[1]  # results/<cache key>/heatmap.png
    return maps[(pair_name, key)]


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("fields", "field", "status", "words"),
    [  # 400: not what the schema says (DRF); 422: the schema's type but the contract's rules refuse it
        ({"name": ""}, "name", 400, "name"),
        ({"name": "has space"}, "name", 422, "characters"),
        ({"input_size": "big"}, "input_size", 422, "'any'"),
        ({"input_size": "8"}, "input_size", 422, "16 to 4096"),
        ({"mean": "0.5,0.5"}, "mean", 422, "three numbers"),
        ({"std": "0.2,0,0.2"}, "std", 422, "positive"),
        ({"inputs": "three"}, "inputs", 400, "three"),
        ({"output": None}, "output", 400, "required"),
    ],
)
def test_bad_contract_fields_are_refused_leaving_nothing(
    api, siamese_onnx, queued, django_capture_on_commit_callbacks, fields, field, status, words
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_model(api, siamese_onnx, **fields)
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert field in error.get("fields", {}), error
    assert words in " ".join(error["fields"][field]) + error["message"]
    assert nothing_left() == (0, []) and not callbacks and not queued


def test_an_empty_file_matches_the_schema_and_is_refused_with_422(api, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_model(api, b"")
    assert response.status_code == 422, response.content
    assert "not an ONNX model" in response.json()["error"]["message"] and "file" in response.json()["error"]["fields"]
    assert nothing_left() == (0, []) and not callbacks and not queued


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("kind", ["torch-save", "raw-pickle", "text"])
def test_a_file_that_is_not_onnx_is_refused_at_once(api, tmp_path, queued, django_capture_on_commit_callbacks, kind):
    if kind == "torch-save":
        path = tmp_path / "model.pt"
        torch.save(Siamese().state_dict(), path)
        data = path.read_bytes()
    else:
        data = pickle.dumps(Payload()) if kind == "raw-pickle" else b"ir_version: 8\ngraph { node { op_type: 'Relu' } }"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_model(api, data, filename="model.onnx")
    assert response.status_code == 422, response.content
    assert "not an ONNX model" in response.json()["error"]["message"]
    assert nothing_left() == (0, []) and not callbacks and not queued


def test_a_model_over_the_size_limit_is_refused(
    api, siamese_onnx, settings, queued, django_capture_on_commit_callbacks
):
    settings.ONNX_MAX_MB = 1
    model = onnx.load_from_string(siamese_onnx)
    padding = np.zeros(300_000, np.float32)  # 1.2 MB of weights: over 1 MB, within the multipart allowance
    model.graph.initializer.append(onnx.numpy_helper.from_array(padding, "unused_padding"))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_model(api, model.SerializeToString())
    assert response.status_code == 413, response.content
    assert "up to 1 MB" in response.json()["error"]["message"]
    assert nothing_left() == (0, []) and not callbacks and not queued


@pytest.mark.parametrize(
    ("make", "fields", "words"),
    [
        (custom_domain_onnx, {}, "'ChangeHead' of domain 'com.example'"),
        (wrong_shape_onnx, {}, "the output has shape 1x3x64x96"),
        ("siamese", {"probe_seconds": 1e-9}, "too slow"),
        ("siamese", {"inputs": "concat6"}, "the graph takes 2"),
        ("siamese", {"output": "probability"}, "outside [0, 1]"),
        ("siamese", {"input_size": "64"}, None),  # dynamic H and W also run at a fixed size: accepted
    ],
)
def test_the_worker_rejects_a_model_with_the_reason_and_deletes_its_file(
    api, siamese_onnx, settings, queued, django_capture_on_commit_callbacks, make, fields, words
):
    fields = dict(fields)
    settings.ONNX_PROBE_SECONDS = fields.pop("probe_seconds", 10.0)
    data = siamese_onnx if make == "siamese" else make()
    body = upload_and_validate(api, data, queued, django_capture_on_commit_callbacks, **fields)
    if words is None:
        assert body["state"] == "ready", body["reason"]
        return
    assert body["state"] == "rejected" and words in body["reason"], body["reason"]
    assert body["validated_at"] and nothing_left() == (1, [])  # the row keeps the reason; the file is gone
    listed = detector_names(api)
    assert "onnx:siam" not in listed
    assert api.delete(f"/api/v1/models/{body['id']}/").status_code == 204
    assert nothing_left() == (0, [])


def test_a_model_cannot_be_run_before_it_is_ready(api, user, siamese_onnx, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert post_model(api, siamese_onnx).status_code == 201
    dataset = make_dataset(user, pairs=[("p", png_bytes(rgb(32, 32, 1)), png_bytes(rgb(32, 32, 2)), None)])
    with pytest.raises(ServiceError, match="validating, not ready"):
        run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["onnx:siam"])


def test_names_are_unique_per_owner(api, other_api, siamese_onnx, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert post_model(api, siamese_onnx).status_code == 201
        again = post_model(api, siamese_onnx)
        assert post_model(other_api, siamese_onnx).status_code == 201  # another user's namespace
    assert again.status_code == 409 and "already have a model called 'siam'" in again.json()["error"]["message"]
    assert UploadedModel.objects.count() == 2 and len(nothing_left()[1]) == 2


# --------------------------------------------------------------------------- isolation
def test_other_users_see_nothing_of_a_model(
    api, other_api, other_user, siamese_onnx, queued, django_capture_on_commit_callbacks
):
    body = upload_and_validate(api, siamese_onnx, queued, django_capture_on_commit_callbacks)
    assert body["state"] == "ready"
    assert other_api.get(f"/api/v1/models/{body['id']}/").status_code == 404
    assert other_api.delete(f"/api/v1/models/{body['id']}/").status_code == 404
    assert other_api.get("/api/v1/models/").json()["results"] == []
    assert "onnx:siam" not in detector_names(other_api)
    dataset = make_dataset(other_user, pairs=[("p", png_bytes(rgb(32, 32, 1)), png_bytes(rgb(32, 32, 2)), None)])
    with pytest.raises(ServiceError, match="no uploaded model called 'siam'"):
        run_services.experiment_create(owner=other_user, dataset=dataset, name="e", detectors=["onnx:siam"])
    assert [m["id"] for m in api.get("/api/v1/models/").json()["results"]] == [body["id"]]
    assert UploadedModel.objects.get().state == "ready"  # untouched by the other user's delete
    # the file itself is served to no one, its owner included: it is only run
    assert api.get(f"/api/v1/media/models/{body['id']}/model.onnx").status_code == 404


# --------------------------------------------------------------------------- the page
def test_the_page_uploads_lists_and_deletes_after_confirming(
    client, user, other_user, siamese_onnx, queued, django_capture_on_commit_callbacks
):
    client.login(username=user.username, password=PASSWORD)
    page = client.get("/models/")
    assert page.status_code == 200 and b'name="input_size"' in page.content
    assert b'href="/models/"' in client.get("/").content  # linked from the navigation
    form = {**CONTRACT, "name": "siam", "file": upload("m.onnx", siamese_onnx, "application/octet-stream")}
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/models/", form).status_code == 302
    refused = client.post("/models/", {**form, "name": "pt", "file": upload("m.onnx", b"PK\x03\x04zip")})
    assert refused.status_code == 422 and b"not an ONNX model" in refused.content
    model = UploadedModel.objects.get()
    assert b"validating" in client.get("/models/").content
    tasks.validate_model(queued.pop())
    assert b"ready" in client.get("/models/").content
    client.logout()
    client.login(username=other_user.username, password=PASSWORD)
    assert client.get(f"/models/{model.pk}/delete/").status_code == 404
    assert client.post(f"/models/{model.pk}/delete/").status_code == 404
    client.logout()
    client.login(username=user.username, password=PASSWORD)
    confirm = client.get(f"/models/{model.pk}/delete/")
    assert confirm.status_code == 200 and b"Delete <code>onnx:siam</code>?" in confirm.content
    assert UploadedModel.objects.exists()  # asking is not deleting
    assert client.post(f"/models/{model.pk}/delete/").status_code == 302
    assert nothing_left() == (0, [])


WEB_PROBE = """
import sys
import django
django.setup()
import diffplatform.urls  # every page and API view module, the models' included
from onnx import TensorProto, helper
from experiments.errors import ServiceError
from experiments.onnx_models import services
from inference.onnx_checks import parse_onnx

inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, "h", "w"]) for n in ("a", "b")]
out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, "h", "w"])
graph = helper.make_graph([helper.make_node("Sub", ["a", "b"], ["out"])], "g", inputs, [out])
parse_onnx(helper.make_model(graph).SerializeToString())
try:
    services.model_upload(owner=None, data=b"PK\\x03\\x04", name="x", input_size="any", mean="0,0,0",
                          std="1,1,1", inputs="two", output="logits")
except ServiceError as exc:
    assert exc.status == 422, exc.message
print("torch imported:", "torch" in sys.modules, "onnxruntime imported:", "onnxruntime" in sys.modules)
"""


def test_the_web_process_checks_an_upload_without_torch_or_onnxruntime():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", WEB_PROBE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "torch imported: False onnxruntime imported: False" in result.stdout


def test_on_a_gpu_worker_without_the_cuda_provider_the_model_runs_and_is_recorded_on_the_cpu(
    api, user, siamese_onnx, queued, django_capture_on_commit_callbacks, monkeypatch
):
    from experiments.plans import worker_side
    from experiments.plans.kinds import run_plan
    from experiments.runs import detector_slot

    assert "CUDAExecutionProvider" not in ort.get_available_providers()  # the CPU package of requirements.txt
    assert upload_and_validate(api, siamese_onnx, queued, django_capture_on_commit_callbacks)["state"] == "ready"
    dataset = make_dataset(user, pairs=[("p", png_bytes(rgb(32, 32, 1)), png_bytes(rgb(32, 32, 2)), None)])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["onnx:siam"])
    run = run_services.run_start(experiment=experiment)
    monkeypatch.setattr(worker_side, "inference_device", lambda: "cuda:0")  # what a GPU worker resolves
    monkeypatch.setattr(worker_side, "expected_precision", lambda learned, device: "bf16")
    slot = detector_slot.DetectorSlot(run, run_plan(run, "onnx:siam"))
    assert (slot.device, slot.precision, slot.input_size, slot.input_size_source) == ("cpu", "fp32", None, "model")
    assert slot.static_record()["memory_kind"] == "cpu_peak_rss"
    assert slot.weights_ref == f"onnx:{UploadedModel.objects.get().sha256}"
    assert slot.load().info.device == "cpu" and slot.weights_ref == f"onnx:{UploadedModel.objects.get().sha256}"
