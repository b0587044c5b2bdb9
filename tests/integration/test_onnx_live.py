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


def test_a_model_that_blows_its_memory_at_a_runs_size_fails_its_detector_and_the_worker_lives(
    user, service_env, tmp_path
):
    import numpy as np
    import psutil

    from diffplatform.celery import app
    from tests.conftest import png_bytes
    from tests.hardening.hostile_models import pixel_hungry_onnx
    from tests.live_services import WorkerPool

    app.control.purge()
    pool = WorkerPool({**service_env, "SANDBOX_MEMORY_MB": "300", "ONNX_PROBE_ANY_SIZE": "256"}, tmp_path)
    try:
        worker = pool.start()
        model = model_services.model_upload(
            owner=user, data=pixel_hungry_onnx(128), name="hungry", input_size="any", mean="0.5,0.5,0.5",
            std="0.25,0.25,0.25", inputs="two", output="logits",
        )  # fmt: skip
        ready = wait_for(lambda: UploadedModel.objects.exclude(state="validating").filter(pk=model.pk).first())
        assert ready.state == "ready", ready.reason  # 32 MB at the probe's 256 px
        rng = np.random.default_rng(0)
        a, b = (png_bytes(rng.integers(0, 256, (1024, 1024, 3), dtype=np.uint8)) for _ in range(2))
        dataset = make_dataset(user, pairs=[("large", a, b, None)])
        experiment = run_services.experiment_create(
            owner=user, dataset=dataset, name="e", detectors=["onnx:hungry", "absdiff"]
        )
        run = run_services.run_start(experiment=experiment)
        wait_for(lambda: run.__class__.objects.get(pk=run.pk).state in ("succeeded", "partial", "failed"), timeout=300)
        run.refresh_from_db()
        assert run.state == "partial", run.error
        assert "the model needs more than 300 MB at 1024 x 1024 px" in run.error
        assert Result.objects.filter(run=run, detector="absdiff").count() == 1
        assert worker.process.poll() is None  # the worker lives, and its model's child is gone
        children = psutil.Process(worker.process.pid).children(recursive=True)
        assert not [child for child in children if "inference.onnx_runner" in " ".join(child.cmdline())]
    finally:
        pool.stop_all()
