"""Checking an uploaded ONNX file before anyone may run it (onnx and onnxruntime only: no torch).

`parse_onnx` is the quick check an upload gets at once (the bytes are an ONNX protobuf, parsed by
`onnx.load_from_string`, never unpickled; `check_onnx_upload` runs it in a sandbox child, so the web
process never decodes the file); `validate_onnx` is the full one a worker runs, all of it in
a sandbox child (`inference.sandbox`: limited memory and time, its death a refusal): the ONNX
checker, standard-domain operators only, tensors stored inside the file, inputs as the contract
says, an onnxruntime session created with graph optimisations off (constant folding of a hostile
graph is where memory explodes), then probe runs on random pairs at the sizes runs will use, whose
output must be a change map at the input's size (1xHxW or 1x1xHxW), finite, and within [0, 1] when
it claims to be a probability. Every refusal is an `OnnxRejected` whose message says what is wrong
and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from inference.detectors.onnx_model import (
    OnnxContract,
    count_parameters,
    model_feed,
    normalise,
    open_session,
    probability_of,
)
from inference.sandbox import ALLOCATION_FAILURES, SandboxLimits, SandboxRefusal, report_stage, run_on_bytes

STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
ANY_SIZE_PROBE = (64, 96)  # H, W of the probe pair for a model that takes any size: not square on purpose
PROBABILITY_TOLERANCE = 1e-6
PARSE_SECONDS = 60.0  # decoding the protobuf at upload: linear in its size (at most ONNX_MAX_MB)
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL = 0x80


class OnnxRejected(ValueError):
    """The file cannot be used as a detector; the message is the reason shown to its owner."""


# --------------------------------------------------------------------------- reading
def parse_onnx(data: bytes):
    """The ModelProto in `data`; `OnnxRejected` when the bytes are not an ONNX model."""
    import onnx

    if data[:4] == _ZIP_MAGIC or data[:1] == bytes([_PICKLE_PROTOCOL]):
        raise OnnxRejected(
            "not an ONNX model: this is a zip or pickle file (a PyTorch .pt/.pth checkpoint?). Export the "
            "network with torch.onnx.export and upload the .onnx file it writes."
        )
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # noqa: BLE001 - whatever hostile bytes make the parser raise
        raise OnnxRejected(f"not an ONNX model: the file does not parse as an ONNX protobuf ({exc}).") from None
    # Protobuf skips unknown fields, so some other files parse "successfully" into an empty model.
    if not model.ir_version or not model.HasField("graph") or not model.graph.node or not model.opset_import:
        raise OnnxRejected(
            "not an ONNX model: the file has no IR version, opset or graph nodes. Export the network with "
            "torch.onnx.export (or another ONNX exporter) and upload the .onnx file it writes."
        )
    return model


def _subgraphs(node) -> Iterator:
    for attribute in node.attribute:
        if attribute.HasField("g"):
            yield attribute.g
        yield from attribute.graphs


def _graph_nodes(graph) -> Iterator:
    """Every node of `graph` and of the graphs nested in its nodes (If, Loop, Scan bodies)."""
    for node in graph.node:
        yield node
        for subgraph in _subgraphs(node):
            yield from _graph_nodes(subgraph)


def _graph_tensors(graph) -> Iterator:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
        for subgraph in _subgraphs(node):
            yield from _graph_tensors(subgraph)


# --------------------------------------------------------------------------- static checks
def check_domains(model) -> None:
    """Standard ONNX operators only (`ai.onnx`, `ai.onnx.ml`); a model-local function may be called
    when its own body uses only standard operators (or other such functions)."""
    import onnx

    functions = {(function.domain, function.name): function for function in model.functions}

    def check(nodes, where: str) -> None:
        for node in nodes:
            if node.domain in STANDARD_DOMAINS or (node.domain, node.op_type) in functions:
                continue
            raise OnnxRejected(
                f"operator {node.op_type!r} of domain {node.domain!r} ({where}) is not a standard ONNX operator; "
                "only the ai.onnx and ai.onnx.ml domains are accepted (no custom or contrib operators: "
                f"re-export with standard operators, opset <= {onnx.defs.onnx_opset_version()})."
            )

    check(_graph_nodes(model.graph), "in the graph")
    for function in model.functions:
        nested = (n for node in function.node for n in [node, *(m for g in _subgraphs(node) for m in _graph_nodes(g))])
        check(nested, f"in function {function.name!r}")


def check_embedded(model) -> None:
    """Every tensor inside the file: external data would make the worker read other files."""
    from onnx import TensorProto

    for tensor in _graph_tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL or tensor.external_data:
            raise OnnxRejected(
                f"tensor {tensor.name!r} is stored outside the file (external data); save the model as one "
                "file (onnx.save(model, path, save_as_external_data=False)); models over 2 GB are not accepted."
            )


def check_with_onnx_checker(model) -> None:
    import onnx

    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError, RuntimeError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OnnxRejected(f"onnx.checker refuses the model: {message}") from None


def _dims(value_info) -> list[int | str | None] | None:
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims: list[int | str | None] = []
    for dim in tensor_type.shape.dim:
        kind = dim.WhichOneof("value")
        dims.append(dim.dim_value if kind == "dim_value" else dim.dim_param if kind == "dim_param" else None)
    return dims


def graph_inputs(model) -> list:
    """The inputs a caller feeds (older exporters also list the initializers as inputs)."""
    initializers = {tensor.name for tensor in model.graph.initializer}
    return [item for item in model.graph.input if item.name not in initializers]


def check_inputs(model, contract: OnnxContract) -> list[dict]:
    """The declared inputs match the contract: how many, float32, N x C x H x W with C = 3 (two) or
    6 (concat6), batch 1 or dynamic, H and W the input size (or dynamic when the model takes any size)."""
    from onnx import TensorProto

    inputs = graph_inputs(model)
    expected, channels = (2, 3) if contract.inputs == "two" else (1, 6)
    names = ", ".join(repr(item.name) for item in inputs) or "none"
    if len(inputs) != expected:
        raise OnnxRejected(
            f"inputs={contract.inputs!r} means {expected} input tensor(s), but the graph takes {len(inputs)} ({names}); "
            "choose inputs='two' for a model called as model(a, b), 'concat6' for one 6-channel tensor."
        )
    described = []
    for item in inputs:
        if not item.type.HasField("tensor_type"):
            raise OnnxRejected(f"input {item.name!r} is not a tensor.")
        elem_type = item.type.tensor_type.elem_type
        if elem_type != TensorProto.FLOAT:
            raise OnnxRejected(
                f"input {item.name!r} is {TensorProto.DataType.Name(elem_type)}; inputs must be float32 (FLOAT)."
            )
        dims = _dims(item)
        described.append({"name": item.name, "shape": dims})
        if dims is None:
            continue  # unknown rank: the probe run tells
        if len(dims) != 4:
            raise OnnxRejected(f"input {item.name!r} has {len(dims)} dimensions; expected 4 (N x C x H x W).")
        batch, channel, height, width = dims
        if isinstance(batch, int) and batch != 1:
            raise OnnxRejected(
                f"input {item.name!r} has a fixed batch size of {batch}; export with batch 1 or dynamic."
            )
        if isinstance(channel, int) and channel != channels:
            raise OnnxRejected(
                f"input {item.name!r} has {channel} channels; inputs={contract.inputs!r} needs {channels}."
            )
        fixed = [dim for dim in (height, width) if isinstance(dim, int)]
        if contract.input_size and any(dim != contract.input_size for dim in fixed):
            raise OnnxRejected(
                f"input {item.name!r} is {height} x {width} pixels but input_size is {contract.input_size}; "
                "set input_size to the size the model was exported at."
            )
        if not contract.input_size and fixed:
            raise OnnxRejected(
                f"input {item.name!r} has a fixed size ({height} x {width}) but input_size is 'any'; set input_size "
                "to that size, or export with dynamic height and width (dynamic_axes) to run at B's size."
            )
    return described


# --------------------------------------------------------------------------- the probe runs
def probe_sizes(contract: OnnxContract, any_size: int) -> list[tuple[int, int]]:
    """(H, W) of each probe: the fixed input size runs resize or tile to; for a model that takes any
    size, a small non-square pair (the output must follow the input's shape) and then `any_size`
    square, as runs feed it B at B's own size."""
    if contract.input_size:
        return [(contract.input_size, contract.input_size)]
    return [ANY_SIZE_PROBE, (any_size, any_size)]


def probe_pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return a, b


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def check_output(raw, contract: OnnxContract, height: int, width: int) -> np.ndarray:
    """The probe's first output: 1xHxW or 1x1xHxW at the input's size, finite, a probability in [0, 1]
    when `contract.output` says so. Returns it as probabilities (H x W)."""
    values = np.asarray(raw)
    if values.shape not in ((1, height, width), (1, 1, height, width)):
        raise OnnxRejected(
            f"the output has shape {'x'.join(map(str, values.shape)) or 'scalar'} on a {height} x {width} input; "
            f"expected 1x{height}x{width} or 1x1x{height}x{width} (one change map at the input's size)."
        )
    if not np.issubdtype(values.dtype, np.floating):
        raise OnnxRejected(f"the output is {values.dtype}; a change map must be floating point.")
    if not np.isfinite(values).all():
        raise OnnxRejected("the output has NaN or infinite values on the probe pair.")
    low, high = float(values.min()), float(values.max())
    if contract.output == "probability" and (low < -PROBABILITY_TOLERANCE or high > 1 + PROBABILITY_TOLERANCE):
        raise OnnxRejected(
            f"output='probability' but the values range over [{low:.4g}, {high:.4g}], outside [0, 1]; "
            "declare output='logits' if the model returns logits (a sigmoid is then applied)."
        )
    return probability_of(values, contract.output)[0]


def _probe(session, contract: OnnxContract, height: int, width: int, seed: int) -> tuple[list, float]:
    report_stage(f"at {height} x {width} px")
    a, b = probe_pair(height, width, seed)
    feed = model_feed(
        [item.name for item in session.get_inputs()], normalise([a], contract), normalise([b], contract), contract
    )
    start = time.perf_counter()
    try:
        outputs = session.run(None, feed)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
        if any(word in str(exc) for word in ALLOCATION_FAILURES):
            raise MemoryError(str(exc)) from None
        raise OnnxRejected(
            f"the probe run at {height} x {width} px failed in onnxruntime: {_first_line(exc)}"
        ) from None
    elapsed_ms = (time.perf_counter() - start) * 1000
    check_output(outputs[0], contract, height, width)
    return outputs, elapsed_ms


def _probe_as_runs_do(data: bytes, contract: OnnxContract, size: tuple[int, int], seed: int) -> None:
    """Once more with the session runs create (graph optimisations on): whatever its constant folding
    makes happens here, inside the limits, and not first in a run."""
    report_stage("while onnxruntime optimises its graph as runs do")
    try:
        session = open_session(data, "cpu")
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
        if any(word in str(exc) for word in ALLOCATION_FAILURES):
            raise MemoryError(str(exc)) from None
        raise OnnxRejected(f"onnxruntime cannot optimise the model as runs do: {_first_line(exc)}") from None
    _probe(session, contract, *size, seed)


def check_onnx_file(path: str, contract: dict, any_size: int, seed: int = 0) -> dict:
    """Every check, in order, then the probe runs on the CPU, in this process: the sandbox's target
    (`validate_onnx` runs it in a limited child). Returns the model's `probe` record."""
    import onnx

    report_stage("while reading the file")
    data = Path(path).read_bytes()
    terms = OnnxContract(**{**contract, "mean": tuple(contract["mean"]), "std": tuple(contract["std"])})
    model = parse_onnx(data)
    check_embedded(model)
    check_domains(model)
    report_stage("in onnx.checker")
    check_with_onnx_checker(model)
    inputs = check_inputs(model, terms)
    report_stage("while onnxruntime creates its session")
    try:
        session = open_session(data, "cpu", validating=True)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own error types
        if any(word in str(exc) for word in ALLOCATION_FAILURES):
            raise MemoryError(str(exc)) from None
        raise OnnxRejected(f"onnxruntime cannot load the model: {_first_line(exc)}") from None
    sizes = probe_sizes(terms, any_size)
    probes = [(size, *_probe(session, terms, *size, seed)) for size in sizes]
    (height, width), outputs, elapsed_ms = probes[0]
    _probe_as_runs_do(data, terms, sizes[-1], seed)
    return {
        "ir_version": int(model.ir_version),
        "opset": {entry.domain or "ai.onnx": int(entry.version) for entry in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": inputs,
        "output": {"name": session.get_outputs()[0].name, "probe_shape": list(np.asarray(outputs[0]).shape)},
        "probe_size": [height, width],
        "probe_ms": round(elapsed_ms, 3),
        "probes": [{"size": list(size), "ms": round(ms, 3)} for size, _, ms in probes],
        "params": count_parameters(model),
        "onnx": onnx.__version__,
        "onnxruntime": _onnxruntime_version(),
    }


def validate_onnx(
    data: bytes, contract: OnnxContract, *, time_limit_s: float, memory_mb: int = 2048, any_size: int = 512
) -> dict:
    """`check_onnx_file` in a sandbox child (`inference.sandbox`): at most `memory_mb` above its
    baseline, `time_limit_s` for everything after start-up (loading, session creation, the probes).
    Returns the `probe` record; raises `OnnxRejected` with the first reason found, or the limit hit."""
    limits = SandboxLimits(memory_mb=memory_mb, seconds=time_limit_s, preload=("numpy", "onnx", "onnxruntime"))
    arguments = {"contract": asdict(contract), "any_size": any_size}
    try:
        probe = run_on_bytes("inference.onnx_checks:check_onnx_file", data, arguments, limits, suffix=".onnx")
    except SandboxRefusal as exc:
        raise OnnxRejected(refusal_reason(exc)) from None
    return {**probe, "time_limit_s": time_limit_s, "memory_mb": memory_mb}


def parse_onnx_file(path: str) -> dict:
    """`parse_onnx` on a file, in this process: the sandbox's target for `check_onnx_upload`."""
    parse_onnx(Path(path).read_bytes())
    return {}


def check_onnx_upload(data: bytes, *, memory_mb: int, time_limit_s: float = PARSE_SECONDS) -> None:
    """`parse_onnx` in a sandbox child, for the web process: a large or hostile protobuf is decoded
    there, within limits, never in the server; `OnnxRejected` with the reason."""
    limits = SandboxLimits(memory_mb=memory_mb, seconds=time_limit_s, preload=("onnx",))
    try:
        run_on_bytes("inference.onnx_checks:parse_onnx_file", data, {}, limits, suffix=".onnx")
    except SandboxRefusal as exc:
        raise OnnxRejected(refusal_reason(exc)) from None


def refusal_reason(refusal: SandboxRefusal) -> str:
    """What the owner reads when the sandbox stopped the check."""
    where = f" {refusal.stage}" if refusal.stage else ""
    if refusal.kind == "memory":
        return (
            f"this model needs more than {refusal.limit:g} MB{where} (the memory a model check may use); "
            "make the model smaller or export it at a smaller input size."
        )
    if refusal.kind == "time":
        return (
            f"too slow: checking the model took over {refusal.limit:g} s (the limit covers loading, session "
            f"creation and the probe runs; it was{where or ' starting'}); make the model smaller or export it "
            "at a smaller input size."
        )
    if refusal.kind == "crashed":
        return f"the model {refusal.message}{where}; it cannot be used."
    return refusal.message


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
