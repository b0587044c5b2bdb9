"""ONNX validation in the sandbox: graph optimisation off, memory and time limited, the sizes runs use."""

import io
import time

import psutil
import pytest
import torch

from inference.detectors.onnx_model import OnnxContract
from inference.onnx_checks import OnnxRejected, probe_sizes, validate_onnx
from tests.hardening.hostile_models import endless_onnx, exploding_onnx
from tests.inference.test_onnx_detector import Siamese

ANY = OnnxContract(input_size=None, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), inputs="two", output="logits")


def siamese_any_size() -> bytes:
    buffer = io.BytesIO()
    axes = {name: {2: "h", 3: "w"} for name in ("a", "b", "out")}
    example = (torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    torch.onnx.export(Siamese().eval(), example, buffer, input_names=["a", "b"], output_names=["out"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
    return buffer.getvalue()


def children() -> list:
    """This process's live children that the sandbox started (the suite's browser keeps its own)."""
    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "inference.sandbox" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found


def test_a_model_is_probed_at_the_sizes_runs_use():
    assert probe_sizes(ANY, 300) == [(64, 96), (300, 300)]
    fixed = OnnxContract(input_size=48, mean=ANY.mean, std=ANY.std, inputs="two", output="logits")
    assert probe_sizes(fixed, 300) == [(48, 48)]
    probe = validate_onnx(siamese_any_size(), ANY, time_limit_s=30, memory_mb=512, any_size=200)
    assert probe["probe_size"] == [64, 96] and [p["size"] for p in probe["probes"]] == [[64, 96], [200, 200]]
    assert probe["memory_mb"] == 512 and probe["time_limit_s"] == 30


def test_a_tiny_model_that_materialises_gigabytes_is_refused_for_memory_not_crashing_this_process():
    before = psutil.Process().memory_info().rss
    with pytest.raises(OnnxRejected, match=r"this model needs more than 512 MB at 64 x 96 px"):
        validate_onnx(exploding_onnx(6.4), ANY, time_limit_s=30, memory_mb=512)
    assert psutil.Process().memory_info().rss - before < 100 * 2**20
    assert children() == []


def test_a_probe_that_never_ends_is_killed_at_the_time_limit():
    start = time.monotonic()
    with pytest.raises(OnnxRejected, match=r"too slow: checking the model took over 2 s .*it was at 64 x 96 px"):
        validate_onnx(endless_onnx(), ANY, time_limit_s=2, memory_mb=512)
    assert time.monotonic() - start < 60
    assert children() == []  # killed, not left running
