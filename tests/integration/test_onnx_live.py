"""An uploaded ONNX model end to end with a real Celery worker: the upload queues its validation on
commit, the worker validates it, and a run queued through the outbox computes with it."""

import io
import time

import pytest
import torch

from experiments import outbox
from experiments.models import Result, UploadedModel
from experiments.onnx_models import services as model_services
from experiments.runs import services as run_services
from tests.factories import make_dataset
from tests.inference.test_onnx_detector import Siamese

pytestmark = pytest.mark.integration


def wait_for(check, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise TimeoutError("the worker did not finish in time")


def test_a_worker_validates_an_upload_and_runs_it(user, make_pair_bytes, celery_worker):
    buffer = io.BytesIO()
    axes = {name: {2: "h", 3: "w"} for name in ("a", "b", "out")}
    example = (torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    torch.onnx.export(Siamese().eval(), example, buffer, input_names=["a", "b"], output_names=["out"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
    model = model_services.model_upload(
        owner=user, data=buffer.getvalue(), name="siam", input_size="any", mean="0.5,0.5,0.5", std="0.25,0.25,0.25",
        inputs="two", output="logits",
    )  # fmt: skip
    ready = wait_for(lambda: UploadedModel.objects.exclude(state="validating").filter(pk=model.pk).first())
    assert ready.state == "ready", ready.reason
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(2)])
    experiment = run_services.experiment_create(
        owner=user, dataset=dataset, name="e", detectors=["onnx:siam", "absdiff"]
    )
    assert outbox.detector_queue(experiment, "onnx:siam") == "gpu"
    run = run_services.run_start(experiment=experiment)
    wait_for(lambda: run.__class__.objects.get(pk=run.pk).state in ("succeeded", "partial", "failed"))
    run.refresh_from_db()
    assert run.state == "succeeded", run.error
    assert Result.objects.filter(run=run, detector="onnx:siam", weights="onnx").count() == 2
    assert run.environment["weights_sha256"]["onnx:siam"] == model.sha256
