"""A researcher's own model as an ONNX file, run with onnxruntime in the detector contract (``base``).

The file comes with its contract (``OnnxContract``): the square input size (or ``None``: a fully
convolutional model run at B's size), the mean and std applied to RGB scaled to [0, 1], how the two
images are fed (``"two"``: tensors A and B; ``"concat6"``: one N x 6 x H x W tensor, A's channels
then B's) and what it answers (``"logits"`` or ``"probability"``, N x H x W or N x 1 x H x W).
Torch-free: onnxruntime runs the graph, NumPy/OpenCV do the rest. The file is never executed as code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inference.detectors.base import (
    Detector,
    DetectorInfo,
    Pair,
    check_image,
    match_size,
    resize_image,
    resize_probability,
)

INPUT_LAYOUTS = ("two", "concat6")
OUTPUT_KINDS = ("logits", "probability")
CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


@dataclass(frozen=True)
class OnnxContract:
    """How to feed an ONNX model and how to read its answer (see the module docstring)."""

    input_size: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    inputs: str
    output: str

    def __post_init__(self):
        if self.inputs not in INPUT_LAYOUTS:
            raise ValueError(f"inputs must be one of {INPUT_LAYOUTS}, got {self.inputs!r}")
        if self.output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {self.output!r}")
        if len(self.mean) != 3 or len(self.std) != 3 or any(value == 0 for value in self.std):
            raise ValueError("mean and std need three numbers each, std none of them 0")


@dataclass(frozen=True)
class OnnxModelFile:
    """An ONNX file on this machine, its sha256 (its provenance) and its contract."""

    path: str
    sha256: str
    contract: OnnxContract


def onnx_device(device: str) -> str:
    """Where onnxruntime runs for a worker whose device is ``device``: CUDA only when asked for and
    the installed onnxruntime has its CUDA provider (``onnxruntime-gpu``), else the CPU."""
    import onnxruntime as ort

    if str(device).startswith("cuda") and CUDA_PROVIDER in ort.get_available_providers():
        return str(device)
    return "cpu"


def open_session(model: bytes, device: str = "cpu", *, validating: bool = False, gpu_memory_mb: int | None = None):
    """An InferenceSession on the model's bytes (never a path: external data files cannot be reached).

    ``validating``: an untrusted model's first session (in the sandbox), with graph optimisations off
    (constant folding would materialise whatever the graph computes from constants, before any limit
    on the run) and one thread. ``gpu_memory_mb``: the most the CUDA provider may allocate (a sandboxed run's budget)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: optimiser notes are not the user's concern
    if validating:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.intra_op_num_threads = options.inter_op_num_threads = 1
    providers = [CPU_PROVIDER]
    if onnx_device(device) != "cpu":
        index = str(device).split(":", 1)[1] if ":" in str(device) else "0"
        cuda = {"device_id": int(index)} | ({"gpu_mem_limit": gpu_memory_mb * 2**20} if gpu_memory_mb else {})
        providers = [(CUDA_PROVIDER, cuda), CPU_PROVIDER]
    return ort.InferenceSession(model, options, providers=providers)


def normalise(images: Sequence[np.ndarray], contract: OnnxContract) -> np.ndarray:
    """RGB uint8 images of one size -> float32 N x 3 x H x W: ``(x / 255 - mean) / std``."""
    batch = (images if isinstance(images, np.ndarray) else np.stack(images)).astype(np.float32)
    batch /= np.float32(255.0)
    batch = (batch - np.asarray(contract.mean, np.float32)) / np.asarray(contract.std, np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


def model_feed(input_names: Sequence[str], xa: np.ndarray, xb: np.ndarray, contract: OnnxContract) -> dict:
    """The session's inputs for normalised A and B batches, per ``contract.inputs``."""
    if contract.inputs == "two":
        return {input_names[0]: xa, input_names[1]: xb}
    return {input_names[0]: np.ascontiguousarray(np.concatenate([xa, xb], axis=1))}


def sized_pair(a: np.ndarray, b: np.ndarray, input_size: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A and B as the network sees them: both at the square input size, or A at B's size."""
    if input_size:
        return resize_image(a, input_size, input_size), resize_image(b, input_size, input_size)
    return match_size(a, b), b


def probability_of(raw: np.ndarray, output: str) -> np.ndarray:
    """The model's first output (N x H x W or N x 1 x H x W) as float32 N x H x W probabilities."""
    values = np.asarray(raw, dtype=np.float32)
    if values.ndim == 4:
        values = values[:, 0]
    if output == "logits":
        values = np.exp(-np.logaddexp(np.float32(0.0), -values)).astype(np.float32)  # sigmoid without overflow
    return values


def session_probabilities(session, input_names, a: np.ndarray, b: np.ndarray, contract: OnnxContract) -> np.ndarray:
    """The session's N x h x w probabilities for uint8 batches A and B (N x h x w x 3), per the contract."""
    xa, xb = normalise(a, contract), normalise(b, contract)
    return probability_of(session.run(None, model_feed(input_names, xa, xb, contract))[0], contract.output)


def count_parameters(model) -> int:
    """Numbers stored in an ONNX model's initializers (its weights)."""
    return int(sum(int(np.prod(tensor.dims, dtype=np.int64)) for tensor in model.graph.initializer))


class OnnxDetector(Detector):
    """An ONNX model in the detector contract: ``predict(a, b)`` -> float32 HxW in [0, 1] at B's size."""

    family = "onnx"

    def __init__(self, name: str, model_file: OnnxModelFile, device: str = "cpu"):
        import onnx

        data = Path(model_file.path).read_bytes()
        self.session = open_session(data, device)
        session_inputs = self.session.get_inputs()
        self.describe(
            name, model_file, "cpu" if self.session.get_providers()[0] == CPU_PROVIDER else str(device),
            input_names=[item.name for item in session_inputs],
            any_batch=not isinstance(session_inputs[0].shape[0], int),
            params=count_parameters(onnx.load_from_string(data)),  # validated before it became usable
        )  # fmt: skip

    def describe(self, name: str, model_file: OnnxModelFile, device: str, *, input_names: list[str],
                 any_batch: bool, params: int, runtime: str = "onnxruntime") -> None:  # fmt: skip
        """Its contract, inputs, batching and `info`, from its session (here or in a sandboxed child)."""
        self.contract = model_file.contract
        self.device = device
        self.input_names = input_names
        # batch several pairs in one call only when the model takes a fixed size and any batch size
        self.batchable = bool(self.contract.input_size) and any_batch
        self.info = DetectorInfo(
            name=name,
            family=self.family,
            learned=True,
            params=params,
            input_size=self.contract.input_size,
            mean=tuple(self.contract.mean),
            std=tuple(self.contract.std),
            weights="onnx",
            weights_sha256=model_file.sha256,
            device=self.device,
            extra={"inputs": self.contract.inputs, "output": self.contract.output, "runtime": runtime},
        )
        self.scaling = None  # resize; `set_scaling` may choose tiling for a model with a fixed input size

    def set_scaling(self, scaling) -> OnnxDetector:
        """Resize or tile (``inference.tiling``), as learned detectors do; a model that takes any size
        runs at B's own size and has nothing to scale."""
        if self.contract.input_size:
            from inference.tiling import Scaling

            self.scaling = Scaling.of(scaling)
            self.info.extra["scaling"] = self.scaling.record()
        return self

    def run(self, pairs: Sequence[Pair]) -> np.ndarray:
        """The network's probabilities (N x h x w, at the size it ran at) for pairs of one size."""
        sized = [sized_pair(check_image(a, "A"), check_image(b, "B"), self.contract.input_size) for a, b in pairs]
        return self.probabilities(np.stack([a for a, _ in sized]), np.stack([b for _, b in sized]))

    def probabilities(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """N x h x w probabilities of the sized uint8 batches A and B (N x h x w x 3)."""
        return session_probabilities(self.session, self.input_names, a, b, self.contract)

    def predict_batch(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        maps: list[np.ndarray | None] = [None] * len(pairs)
        resized = []
        for index, (a, b) in enumerate(pairs):
            if self._tiles(check_image(b, "B")):
                maps[index] = self.predict_tiled(check_image(a, "A"), b)
            else:
                resized.append(index)
        groups = [resized] if self.batchable and resized else [[index] for index in resized]
        for group in groups:
            probs = self.run([pairs[index] for index in group])
            for index, prob in zip(group, probs, strict=True):
                height, width = pairs[index][1].shape[:2]
                maps[index] = resize_probability(prob, height, width)
        return maps

    def _tiles(self, b: np.ndarray) -> bool:
        size = self.contract.input_size
        return bool(self.scaling and size and self.scaling.tiles(b.shape[0], b.shape[1], size))

    def predict_tiled(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """B's map from windows of the input size over B's frame (A resized to B's size first)."""
        from inference.tiling import tiled_map

        def windows(tiles: Sequence[Pair]) -> np.ndarray:
            if self.batchable:
                return self.run(tiles)
            return np.concatenate([self.run([tile]) for tile in tiles])

        size = self.contract.input_size
        overlap, batch = self.scaling.overlap, self.scaling.tile_batch
        return tiled_map(match_size(a, b), b, size=size, predict_tiles=windows, overlap=overlap, tile_batch=batch)
