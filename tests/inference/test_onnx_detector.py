"""The ONNX detector and the checks a file passes before it may run (onnx and onnxruntime, no Django)."""

import io
import re

import numpy as np
import pytest
import torch
from onnx import TensorProto, helper
from onnx.external_data_helper import set_external_data

from inference.detectors.onnx_model import OnnxContract, OnnxDetector, OnnxModelFile
from inference.onnx_checks import OnnxRejected, check_domains, check_embedded, validate_onnx

CONTRACT = OnnxContract(input_size=32, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), inputs="two", output="logits")


class Siamese(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.encoder = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.head = torch.nn.Conv2d(4, 1, 1)

    def forward(self, a, b):
        return self.head(torch.abs(self.encoder(a) - self.encoder(b)))


def test_pairs_are_batched_when_the_model_takes_any_batch_and_give_the_maps_of_single_calls(tmp_path):
    buffer = io.BytesIO()
    axes = {name: {0: "batch"} for name in ("a", "b", "out")}
    example = (torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    torch.onnx.export(Siamese().eval(), example, buffer, input_names=["a", "b"], output_names=["out"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)  # fmt: skip
    path = tmp_path / "m.onnx"
    path.write_bytes(buffer.getvalue())
    validate_onnx(buffer.getvalue(), CONTRACT, time_limit_s=10)
    detector = OnnxDetector("onnx:m", OnnxModelFile(str(path), "f" * 64, CONTRACT))
    rng = np.random.default_rng(0)
    pairs = [
        tuple(rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(2))
        for h, w in ((32, 32), (50, 70), (20, 24))
    ]
    assert detector.batchable and detector.info.weights == "onnx" and detector.info.weights_sha256 == "f" * 64
    batched = detector.predict_batch(pairs)
    for (a, b), prob in zip(pairs, batched, strict=True):
        assert prob.shape == b.shape[:2] and prob.dtype == np.float32 and 0 <= prob.min() <= prob.max() <= 1
        np.testing.assert_allclose(prob, detector.predict(a, b), atol=1e-6)


def _model(nodes, functions=(), opsets=(("", 17),)):
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, "h", "w"]) for n in ("a", "b")]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, "h", "w"])
    graph = helper.make_graph(nodes, "g", inputs, [output])
    return helper.make_model(graph, functions=list(functions), opset_imports=[helper.make_opsetid(*o) for o in opsets])


def _function(body_op, body_domain=""):
    body = [helper.make_node(body_op, ["x"], ["y"], domain=body_domain)]
    return helper.make_function("local.fn", "Head", ["x"], ["y"], body, [helper.make_opsetid("", 17)])


def test_a_local_function_may_be_called_when_its_body_uses_standard_operators_only():
    nodes = [helper.make_node("Sub", ["a", "b"], ["d"]), helper.make_node("Head", ["d"], ["out"], domain="local.fn")]
    check_domains(_model(nodes, [_function("Abs")], (("", 17), ("local.fn", 1))))
    with pytest.raises(OnnxRejected, match=re.escape("'Secret' of domain 'com.example' (in function 'Head')")):
        check_domains(_model(nodes, [_function("Secret", "com.example")], (("", 17), ("local.fn", 1))))


def test_a_tensor_stored_outside_the_file_is_refused():
    model = _model([helper.make_node("Sub", ["a", "b"], ["out"])])
    weights = helper.make_tensor("w", TensorProto.FLOAT, [1], np.ones(1, np.float32).tobytes(), raw=True)
    weights.data_location = TensorProto.EXTERNAL
    set_external_data(weights, location="../../etc/passwd")
    model.graph.initializer.append(weights)
    with pytest.raises(OnnxRejected, match="external data"):
        check_embedded(model)
    with pytest.raises(OnnxRejected, match="external data"):
        validate_onnx(model.SerializeToString(), CONTRACT, time_limit_s=10)


def test_a_fixed_size_model_tiles_large_pairs_when_asked(tmp_path):
    """Tiling without overlap stitches windows: each window's map is the model's own on that window."""
    from inference.tiling import Scaling

    buffer = io.BytesIO()
    example = (torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 32))
    torch.onnx.export(Siamese().eval(), example, buffer, input_names=["a", "b"], output_names=["out"],
                      opset_version=17, dynamo=False)  # fmt: skip
    path = tmp_path / "m.onnx"
    path.write_bytes(buffer.getvalue())
    detector = OnnxDetector("onnx:m", OnnxModelFile(str(path), "f" * 64, CONTRACT))
    rng = np.random.default_rng(3)
    a, b = (rng.integers(0, 256, (64, 96, 3), dtype=np.uint8) for _ in range(2))
    resized = detector.predict(a, b)
    tiled = detector.set_scaling(Scaling(mode="tile", overlap=0.0)).predict(a, b)
    assert detector.info.extra["scaling"]["mode"] == "tile" and tiled.shape == (64, 96)
    for y in (0, 32):
        for x in (0, 32, 64):
            window = detector.set_scaling("resize").predict(a[y : y + 32, x : x + 32], b[y : y + 32, x : x + 32])
            np.testing.assert_allclose(tiled[y : y + 32, x : x + 32], window, atol=1e-6)
    assert np.abs(tiled - resized).max() > 1e-3  # a different computation, not the resized map again
