"""Model memory (issue 27 item 5): a detector's own memory, measured in a fresh process, is a few MB
for a classical detector, at least the weights for a learned one and growing with its input size,
and does not depend on what the calling process holds."""

import numpy as np
import pytest

from inference.memory_probe import CPU_MODEL_RSS, measure_model_memory
from inference.sandbox import SandboxRefusal


def measure(name, input_size=None, size=256, weights=None):
    return measure_model_memory(
        name=name, weights=weights, input_size=input_size, device="cpu", height=size, width=size
    )


def test_absdiffs_model_memory_is_a_few_mb():
    figure = measure("absdiff")
    assert figure["model_memory_kind"] == CPU_MODEL_RSS
    assert 0 < figure["model_memory_mib"] < 64
    assert figure["weights_mib"] is None and figure["model_memory_pair"] == [256, 256]


def test_a_learned_detector_needs_its_weights_and_more_at_a_larger_input():
    small, large = measure("siamese-unet", input_size=64), measure("siamese-unet", input_size=512)
    weights = small["weights_mib"]
    # the network's parameters and buffers, counted from its tensors: 1.35 million float32 values
    assert weights == large["weights_mib"] and 4 < weights < 7
    assert small["model_memory_mib"] >= weights
    # activations of one forward pass: 64x64 -> 512x512 is 64 times the pixels
    assert large["model_memory_mib"] > small["model_memory_mib"] + 50


def test_the_figure_is_not_the_calling_processs_memory():
    before = measure("absdiff")["model_memory_mib"]
    held = np.ones(500 * 2**20, dtype=np.uint8)  # 500 MiB resident in this process (every page written)
    try:
        after = measure("absdiff")["model_memory_mib"]
    finally:
        del held
    assert after < 64 and abs(after - before) < 16


def test_an_unknown_detector_is_a_refusal_saying_so():
    with pytest.raises(SandboxRefusal, match="nope"):
        measure("nope")


def siamese_onnx(side: int, channels: int) -> bytes:
    """A shared convolution on A and B, the absolute difference, a 1x1 convolution: logits 1x1xHxW."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)
               for name, shape in (("w", (channels, 3, 3, 3)), ("head", (1, channels, 1, 1)))]  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["a", "w"], ["fa"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["b", "w"], ["fb"], pads=[1, 1, 1, 1]),
        helper.make_node("Sub", ["fa", "fb"], ["d"]),
        helper.make_node("Abs", ["d"], ["e"]),
        helper.make_node("Conv", ["e", "head"], ["out"]),
    ]
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, side, side]) for n in ("a", "b")]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, side, side])
    graph = helper.make_graph(nodes, "siamese", inputs, [output], initializer=weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def test_an_onnx_model_is_measured_the_same_way(tmp_path):
    import dataclasses

    from inference.detectors.onnx_model import OnnxContract

    path = tmp_path / "m.onnx"
    path.write_bytes(siamese_onnx(128, 64))
    contract = OnnxContract(input_size=128, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), inputs="two", output="logits")
    onnx = {"path": str(path), "sha256": "f" * 64, "contract": dataclasses.asdict(contract)}
    figure = measure_model_memory(name="onnx:m", weights=None, input_size=128, device="cpu", height=200, width=200,
                                  onnx=onnx)  # fmt: skip
    assert figure["model_memory_kind"] == CPU_MODEL_RSS
    assert figure["weights_mib"] == round(path.stat().st_size / 2**20, 2)
    # two 64-channel float32 feature maps at 128 x 128 are 4 MiB each: the activations show
    assert 8 <= figure["model_memory_mib"] < 256
