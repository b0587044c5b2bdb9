"""Model memory: what one detector itself needs (its weights plus one batch-1 prediction at the
run's size), measured apart from everything else the worker holds.

- CPU (``"cpu_model_rss"``): in a fresh process (the sandbox's child, `inference.sandbox`: one
  thread for OpenMP/BLAS, nothing else loaded). The child imports torch and the detectors, runs a
  tiny convolution (so the libraries' kernels are loaded) and decodes the pair's stand-in (seeded
  random pixels of the pair's size); that is its baseline. Then it builds the detector and predicts
  the pair once, and the figure is its peak resident set size above that baseline
  (`inference.memory.measure_peak_memory`: the kernel's ``VmHWM`` after a reset through
  ``/proc/self/clear_refs``, else RSS sampled every 2 ms). So the figure is the weights, the
  activations of one forward pass and the detector's own working arrays, and nothing the worker
  happened to hold (other models, the platform, earlier runs).
- CUDA (``"cuda_model_allocated"``): in the worker, since CUDA memory is counted per tensor: the
  detector is built afresh and predicts the pair once; the figure is
  ``torch.cuda.max_memory_allocated`` (peak reset first) minus what was allocated just before the
  build. The caching allocator's unused reserve and the CUDA context are not counted.

The worker's own peak RSS during a run (`inference.memory.CPU_PEAK_RSS`) is a different figure
(``peak_memory_mb``: "worker peak RSS") and stays beside this one.
"""

from __future__ import annotations

import json

CPU_MODEL_RSS = "cpu_model_rss"
CUDA_MODEL_ALLOCATED = "cuda_model_allocated"
MODEL_MEMORY_KINDS = {
    CPU_MODEL_RSS: "weights + one batch-1 prediction: peak RSS above the baseline of a fresh process (CPU)",
    CUDA_MODEL_ALLOCATED: "weights + one batch-1 prediction: peak CUDA memory allocated above the level before loading",
}
METHOD_VERSION = 1  # part of the cache key: a changed way of measuring measures again
PROBE_MEMORY_MB = 32 * 1024  # the child's address-space limit above its baseline: a backstop only
PROBE_SECONDS = 600.0
_MIB = 1024 * 1024
# imported before the baseline: library code is the process's, not the model's (every detector module
# and what they import lazily; an ONNX model's runtime is imported by its own module)
LIBRARIES = ("numpy", "torch", "torchvision.models", "inference.registry", "inference.pixel_maps", "inference.tiling",
             "inference.runtime", "inference.weights", "inference.detectors.classical", "inference.detectors.learned",
             "inference.detectors.siamese", "inference.detectors.unet", "inference.detectors.compare_head",
             "inference.detectors.ensemble")  # fmt: skip
ONNX_LIBRARIES = ("onnx", "onnxruntime", "inference.detectors.onnx_model")


def measure_model_memory(
    *, name: str, weights, input_size: int | None, device: str, height: int, width: int, seed: int = 0,
    scaling: str = "auto", options: dict | None = None, onnx: dict | None = None,
) -> dict:  # fmt: skip
    """The model memory of detector ``name`` as built with ``weights`` / ``input_size`` / ``options``
    (an uploaded ONNX model: ``onnx`` = its file's ``path``, ``sha256`` and ``contract`` fields),
    predicting one pair of ``height`` x ``width`` px: ``{"model_memory_mib", "model_memory_kind",
    "weights_mib", "model_memory_pair"}``. ``SandboxRefusal`` when the detector could not be built
    or run in the child (its message says why). An ONNX model is measured on the CPU wherever it
    runs: onnxruntime's GPU memory is not torch's to count."""
    arguments = {"name": name, "weights": weights, "input_size": input_size, "height": height, "width": width,
                 "seed": seed, "scaling": scaling, "options": options, "onnx": onnx}  # fmt: skip
    arguments = json.loads(json.dumps(arguments, default=str))  # file paths as text: plain data crosses
    if str(device).startswith("cuda") and onnx is None:
        return _measure_cuda(device=str(device), **arguments)
    from inference.sandbox import SandboxLimits, run_sandboxed

    preload = LIBRARIES + (ONNX_LIBRARIES if onnx else ())
    limits = SandboxLimits(memory_mb=PROBE_MEMORY_MB, seconds=PROBE_SECONDS, preload=preload)
    return run_sandboxed("inference.memory_probe:probe_in_child", arguments, limits)


def probe_in_child(**arguments) -> dict:
    """Run in the fresh child: the baseline after imports, then the detector's own peak above it."""
    import gc

    import torch

    from inference.memory import measure_peak_memory

    torch.nn.functional.conv2d(torch.zeros(1, 3, 8, 8), torch.zeros(4, 3, 3, 3))  # load the kernels
    a, b = _pair(arguments["height"], arguments["width"], arguments["seed"])
    gc.collect()
    with measure_peak_memory("cpu") as reading:
        detector = _build(device="cpu", **arguments)
        with torch.inference_mode():
            detector.predict(a, b)
    return _figure(reading.peak_mb - reading.baseline_mb, CPU_MODEL_RSS, detector, arguments)


def _measure_cuda(*, device: str, **arguments) -> dict:
    import torch

    a, b = _pair(arguments["height"], arguments["width"], arguments["seed"])
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    detector = _build(device=device, **arguments)
    with torch.inference_mode():
        detector.predict(a, b)
    torch.cuda.synchronize(device)
    figure = (torch.cuda.max_memory_allocated(device) - before) / _MIB
    result = _figure(figure, CUDA_MODEL_ALLOCATED, detector, arguments)
    del detector
    torch.cuda.empty_cache()
    return result


def _pair(height: int, width: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
            rng.integers(0, 256, (height, width, 3), dtype=np.uint8))  # fmt: skip


def _build(*, name, weights, input_size, device, seed, scaling, options, onnx=None, **_):
    from inference.registry import create_detector
    from inference.runtime import seed_everything

    if onnx is not None:
        from inference.detectors.onnx_model import OnnxContract, OnnxDetector, OnnxModelFile

        contract = OnnxContract(**{k: tuple(v) if isinstance(v, list) else v for k, v in onnx["contract"].items()})
        model_file = OnnxModelFile(onnx["path"], onnx["sha256"], contract)
        return OnnxDetector(name, model_file, device=device).set_scaling(scaling)

    seed_everything(seed)  # "random" weights are the seeded network a run builds
    sized = {"input_size": input_size} if input_size else {}
    return create_detector(name, weights=weights, device=device, scaling=scaling, **sized, **(options or {}))


def _figure(mib: float, kind: str, detector, arguments: dict) -> dict:
    return {
        "model_memory_mib": round(max(mib, 0.0), 2),
        "model_memory_kind": kind,
        "weights_mib": _onnx_mib(arguments["onnx"]) if arguments.get("onnx") else _weights_mib(detector),
        "model_memory_pair": [arguments["height"], arguments["width"]],
    }


def _onnx_mib(onnx: dict) -> float:
    """An ONNX model's weights: its file (initialisers are nearly all of it; external data is refused)."""
    import os

    return round(os.path.getsize(onnx["path"]) / _MIB, 2)


def _weights_mib(detector) -> float | None:
    """Bytes of the detector's parameters and buffers (every member's, for an ensemble); None without any."""
    modules = [getattr(detector, "model", None)]
    modules += [getattr(member, "model", None) for member in getattr(detector, "members", None) or ()]
    total = sum(
        tensor.numel() * tensor.element_size()
        for module in modules
        if module is not None and hasattr(module, "parameters")
        for tensor in (*module.parameters(), *module.buffers())
    )
    return round(total / _MIB, 2) if total else None
