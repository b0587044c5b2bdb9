"""Hostile model files, made as an attacker would, for the sandbox's tests (small files, large effects)."""

import io
import zipfile

import numpy as np
from onnx import TensorProto, helper, numpy_helper

ONNX_FIELDS = {"input_size": "any", "mean": "0.5,0.5,0.5", "std": "0.25,0.25,0.25", "inputs": "two",
               "output": "logits"}  # fmt: skip


def _onnx(nodes, initializers=()) -> bytes:
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 3, "h", "w"]) for n in ("a", "b")]
    output = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 1, "h", "w"])
    graph = helper.make_graph(nodes, "g", inputs, [output], initializer=list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def exploding_onnx(gigabytes: float = 6.4) -> bytes:
    """A few hundred bytes whose graph materialises a `gigabytes` float tensor (ConstantOfShape of a
    constant shape: folded at session creation when optimisations are on, else made by the run)."""
    count = int(gigabytes * 1e9 / 4)
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=1),
        helper.make_node("Sub", ["a", "b"], ["diff"]),
        helper.make_node("ReduceMean", ["diff"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Add", ["mean", "total"], ["out"]),
    ]  # fmt: skip
    return _onnx(nodes, [numpy_helper.from_array(np.array([count], np.int64), "shape")])


def endless_onnx() -> bytes:
    """A Loop of 10^12 additions: session creation is quick, the probe never ends by itself."""
    body = helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Add", ["x_in", "one"], ["x_out"])],
        "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_in", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("x_out", TensorProto.FLOAT, [1])],
        initializer=[numpy_helper.from_array(np.array([1.0], np.float32), "one")],
    )  # fmt: skip
    nodes = [
        helper.make_node("Loop", ["trips", "keep_going", "start"], ["count"], body=body),
        helper.make_node("Sub", ["a", "b"], ["diff"]),
        helper.make_node("ReduceMean", ["diff"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Add", ["mean", "count"], ["out"]),
    ]
    constants = [
        numpy_helper.from_array(np.array(10**12, np.int64), "trips"),
        numpy_helper.from_array(np.array(True), "keep_going"),
        numpy_helper.from_array(np.array([0.0], np.float32), "start"),
    ]
    return _onnx(nodes, constants)


def fitting_state_dict(detector: str = "siamese-unet") -> dict:
    import torch

    from inference.registry import get_spec

    torch.manual_seed(0)
    return get_spec(detector).resolve_model_factory()(None).state_dict()


def torch_save_bytes(state_dict: dict, detector: str = "siamese-unet") -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({"state_dict": state_dict, "meta": {"detector": detector}}, buffer)
    return buffer.getvalue()


def rezipped(data: bytes, *, compression=zipfile.ZIP_DEFLATED, extra: dict | None = None, duplicate=False) -> bytes:
    """`data` (a torch.save zip) written again with `compression`, `extra` members added (name ->
    (megabytes of zeros, streamed)), and the first member twice when `duplicate`."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w", compression, compresslevel=9) as target:
        names = source.namelist()
        for name in names + names[:1] * duplicate:
            target.writestr(name, source.read(name))
        for name, megabytes in (extra or {}).items():
            with target.open(name, "w", force_zip64=True) as handle:
                zeros = bytes(1 << 20)
                for _ in range(megabytes):
                    handle.write(zeros)
    return out.getvalue()


def deflate_bomb_checkpoint(megabytes: int = 512) -> bytes:
    """About 500 kB on the wire, `megabytes` once decompressed: a real checkpoint's members deflated,
    plus a storage of zeros."""
    import torch

    small = torch_save_bytes({"w": torch.zeros(3, 3)})
    top = zipfile.ZipFile(io.BytesIO(small)).namelist()[0].split("/")[0]
    return rezipped(small, extra={f"{top}/data/99": megabytes})


def pixel_hungry_onnx(floats_per_pixel: int = 128) -> bytes:
    """A model that takes any size and materialises `floats_per_pixel` floats per input pixel (a shape
    computed from the input's H and W: nothing to fold): small at the probe's sizes, huge at a large B."""
    nodes = [
        helper.make_node("Shape", ["a"], ["shape"]),
        helper.make_node("Slice", ["shape", "from", "to"], ["hw"]),
        helper.make_node("ReduceProd", ["hw"], ["pixels"], keepdims=1),
        helper.make_node("Mul", ["pixels", "per_pixel"], ["count"]),
        helper.make_node("ConstantOfShape", ["count"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "zero"], ["nothing"]),
        helper.make_node("Sub", ["a", "b"], ["diff"]),
        helper.make_node("ReduceMean", ["diff"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Add", ["mean", "nothing"], ["out"]),
    ]  # fmt: skip
    constants = [
        numpy_helper.from_array(np.array([2], np.int64), "from"),
        numpy_helper.from_array(np.array([4], np.int64), "to"),
        numpy_helper.from_array(np.array([floats_per_pixel], np.int64), "per_pixel"),
        numpy_helper.from_array(np.array([0.0], np.float32), "zero"),
    ]
    return _onnx(nodes, constants)
