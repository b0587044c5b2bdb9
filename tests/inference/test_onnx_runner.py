"""An uploaded ONNX model in runs: the same maps as onnxruntime in the worker's own process, from a
sandboxed child whose memory limit, deadline or death fails the call with its reason, never the caller."""

import io
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil
import pytest
import torch

from inference.detectors.onnx_model import OnnxContract, OnnxDetector, OnnxModelFile
from inference.onnx_runner import OnnxModelFailed, RunnerLimits, SandboxedOnnxDetector
from inference.sandbox import ROOT
from tests.hardening.hostile_models import endless_onnx, pixel_hungry_onnx
from tests.inference.test_onnx_detector import Siamese

ANY = OnnxContract(input_size=None, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), inputs="two", output="logits")
FIXED = OnnxContract(input_size=32, mean=(0.4, 0.45, 0.5), std=(0.2, 0.25, 0.3), inputs="two", output="logits")
LIMITS = RunnerLimits(memory_mb=300, call_seconds=60)


def model_file(tmp_path, data: bytes, contract: OnnxContract) -> OnnxModelFile:
    path = tmp_path / "model.onnx"
    path.write_bytes(data)
    return OnnxModelFile(str(path), "e" * 64, contract)


@pytest.fixture(scope="module")
def siamese_onnx() -> bytes:
    buffer = io.BytesIO()
    axes = {name: {0: "batch", 2: "h", 3: "w"} for name in ("a", "b")}
    torch.onnx.export(Siamese().eval(), (torch.zeros(1, 3, 32, 32),) * 2, buffer, input_names=["a", "b"],
                      output_names=["out"], dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
    return buffer.getvalue()


def pairs(*sizes, seed=0):
    rng = np.random.default_rng(seed)
    return [tuple(rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2)) for h, w in sizes]


def runner_children() -> list[psutil.Process]:
    return [child for child in psutil.Process().children(recursive=True) if "inference.onnx_runner" in child.cmdline()]


@pytest.fixture
def sandboxed():
    made = []

    def make(*args, **kwargs) -> SandboxedOnnxDetector:
        made.append(SandboxedOnnxDetector(*args, **kwargs))
        return made[-1]

    yield make
    for detector in made:
        detector.close()


@pytest.mark.parametrize("contract", [ANY, FIXED], ids=["any-size", "fixed-size"])
def test_the_maps_equal_onnxruntime_in_the_worker_itself(tmp_path, siamese_onnx, sandboxed, contract):
    file = model_file(tmp_path, siamese_onnx, contract)
    inside, outside = OnnxDetector("onnx:m", file), sandboxed("onnx:m", file, limits=LIMITS)
    batch = pairs((32, 32), (50, 70), (20, 24))
    for expected, got in zip(inside.predict_batch(batch), outside.predict_batch(batch), strict=True):
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    assert outside.batchable == inside.batchable and outside.input_names == inside.input_names
    assert {**outside.info.as_dict(), "extra": {}} == {**inside.info.as_dict(), "extra": {}}
    assert outside.info.extra["sandbox"] == {"memory_mb": 300, "call_seconds": 60}
    if contract.input_size:  # tiled over a large B, window by window through the pipe
        inside.set_scaling("tile"), outside.set_scaling("tile")
        (a, b), *_ = pairs((70, 90), seed=3)
        np.testing.assert_allclose(outside.predict(a, b), inside.predict(a, b), atol=1e-6, rtol=0)


def test_a_model_that_blows_its_memory_at_a_large_size_fails_that_call_and_the_next_call_works(tmp_path, sandboxed):
    detector = sandboxed("onnx:hungry", model_file(tmp_path, pixel_hungry_onnx(128), ANY), limits=LIMITS)
    (a, b), *_ = pairs((64, 96))
    first_child = runner_children()
    small = detector.predict(a, b)  # 3 MB: within the budget
    assert small.shape == (64, 96)
    (big_a, big_b), *_ = pairs((1024, 1024))  # 512 MB at this size
    with pytest.raises(OnnxModelFailed, match=r"^the model needs more than 300 MB at 1024 x 1024 px$"):
        detector.predict(big_a, big_b)
    assert runner_children() == [] and all(not child.is_running() for child in first_child)
    np.testing.assert_array_equal(detector.predict(a, b), small)
    assert len(runner_children()) == 1  # a new child for the next call


def test_a_call_past_its_deadline_is_killed_and_failed(tmp_path, sandboxed):
    limits = RunnerLimits(memory_mb=300, call_seconds=2)
    detector = sandboxed("onnx:endless", model_file(tmp_path, endless_onnx(), ANY), limits=limits)
    child = runner_children()[0]
    (a, b), *_ = pairs((16, 16))
    started = time.monotonic()
    with pytest.raises(OnnxModelFailed, match=r"^the model took longer than 2 s at 16 x 16 px$"):
        detector.predict(a, b)
    assert time.monotonic() - started < 30
    child.wait(timeout=10)
    assert runner_children() == []


def test_a_model_that_does_not_load_is_a_failure_with_its_reason(tmp_path):
    with pytest.raises(OnnxModelFailed, match="while onnxruntime creates its session"):
        SandboxedOnnxDetector("onnx:junk", model_file(tmp_path, b"not a model", ANY), limits=LIMITS)
    assert runner_children() == []


EXITING_WORKER = """
import sys
from inference.detectors.onnx_model import OnnxContract, OnnxModelFile
from inference.onnx_runner import RunnerLimits, SandboxedOnnxDetector
contract = OnnxContract(input_size=None, mean=(0.5,) * 3, std=(0.5,) * 3, inputs="two", output="logits")
detector = SandboxedOnnxDetector("onnx:m", OnnxModelFile(sys.argv[1], "e" * 64, contract), limits=RunnerLimits(300, 60))
print(detector.process.pid, flush=True)
if sys.argv[2] == "killed":
    import os, signal
    os.kill(os.getpid(), signal.SIGKILL)  # no atexit: the child sees its stdin close
"""


@pytest.mark.parametrize("ending", ["exits", "killed"])
def test_the_child_ends_with_the_worker_process(tmp_path, siamese_onnx, ending):
    file = model_file(tmp_path, siamese_onnx, ANY)
    script = textwrap.dedent(EXITING_WORKER)
    worker = subprocess.run([sys.executable, "-c", script, file.path, ending], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    pid = int(worker.stdout.split()[0])
    deadline = time.monotonic() + 20
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"the runner {pid} outlived its worker ({ending})"
        time.sleep(0.1)
