"""Speed, memory and compute cost of a detector, measured the way benchmarks should be.

:func:`profile_detector` works with any object honouring the detector contract
(``detector.info``, ``detector.predict``; optionally ``detector.model`` and ``detector.device``):

- inputs are decoded arrays, so file I/O and decoding stay outside the timed region;
- ``warmup`` untimed calls come first (lazy initialisation, cuDNN autotuning, caches);
- each timed call is bracketed by ``torch.cuda.synchronize()`` on CUDA devices;
- latency is reported per call (one pair, or one batch when ``batch_size > 1``) as p50, p95
  and mean over the timed calls.

Memory (``memory_kind`` says which figure ``peak_memory_mb`` is; MiB = 2**20 bytes), measured
with the one meter, ``inference.memory.measure_peak_memory``:

- ``"cuda_peak_allocated"``: ``torch.cuda.max_memory_allocated`` over the timed calls, after
  resetting the peak; it includes the weights and every tensor alive during the calls, but not
  memory held by the caching allocator and unused, nor the CUDA context;
- ``"cpu_rss_peak_delta"``: how far the process's resident set size rose above its level just
  before the first call, sampled every 2 ms by a helper thread during that first,
  untimed call. It is a lower bound of the working memory: memory already resident (freed
  earlier and kept by the allocator) does not show, and spikes shorter than 2 ms can be
  missed. (The platform's runs report ``"cpu_peak_rss"`` instead: the whole process's peak,
  weights included; see ``inference.memory``.) It is measured on the first call because the allocator keeps memory after it.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode``, which counts a multiply-add as two
FLOPs (so a convolution's FLOPs are twice its MACs); operators without a formula (element-wise
ops, pooling, normalisation) are not counted.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from inference.memory import CPU_RSS_PEAK_DELTA, measure_peak_memory
from inference.numbers import json_safe


@dataclass(frozen=True)
class Profile:
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_mean: float
    peak_memory_mb: float
    memory_kind: str
    params: int | None
    flops: int | None
    device_name: str
    batch_size: int
    timed_calls: int
    warmup: int

    def as_dict(self) -> dict:
        return {k: json_safe(v) for k, v in asdict(self).items()}


def profile_detector(
    detector,
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    warmup: int = 2,
    repeats: int | None = None,
    batch_size: int = 1,
    count_model_flops: bool = True,
) -> Profile:
    """Time ``detector`` on ``pairs`` (decoded RGB arrays), cycling through them.

    ``repeats`` is the number of timed calls (default: one per pair, or one per batch).
    """
    if not pairs:
        raise ValueError("profile_detector needs at least one (a, b) pair")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    device = _torch_device(detector)
    calls = _call_inputs(pairs, batch_size)
    repeats = len(calls) if repeats is None else repeats
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")

    def run(inputs):
        return detector.predict(*inputs) if batch_size == 1 else detector.predict_batch(inputs)

    cpu_memory = None
    if device.type != "cuda":  # on the CPU, what the first (untimed) call takes from the OS
        with measure_peak_memory("cpu", cpu_kind=CPU_RSS_PEAK_DELTA) as cpu_memory:
            run(calls[0])
    for index in range(warmup):
        run(calls[index % len(calls)])
    with measure_peak_memory(str(device)) as cuda_memory:
        times_ms = [_timed_ms(run, calls[index % len(calls)], device) for index in range(repeats)]
    memory = cpu_memory if cpu_memory is not None else cuda_memory
    memory_mb, memory_kind = memory.peak_mb, memory.kind
    return Profile(
        latency_ms_p50=float(np.percentile(times_ms, 50)),
        latency_ms_p95=float(np.percentile(times_ms, 95)),
        latency_ms_mean=float(np.mean(times_ms)),
        peak_memory_mb=float(memory_mb),
        memory_kind=memory_kind,
        params=_params(detector),
        flops=_detector_flops(detector, pairs[0], device) if count_model_flops else None,
        device_name=device_name(device),
        batch_size=batch_size,
        timed_calls=repeats,
        warmup=warmup,
    )


def count_flops(model: torch.nn.Module, example_inputs) -> int:
    """FLOPs of one forward pass of ``model`` in eval mode (multiply-add = 2 FLOPs).

    ``example_inputs`` is a tensor or a tuple of tensors passed as positional arguments, or,
    for change-detection models whose ``forward(xa, xb)`` takes two images, a side length
    ``size`` or ``(height, width)``: two zero tensors of shape 1x3xHxW are then made.
    """
    inputs = _example_tensors(model, example_inputs)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def device_name(device: str | torch.device) -> str:
    """Human-readable name of the hardware behind ``device``."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()})"
    if device.type == "cpu":
        return f"{cpu_model()} ({os.cpu_count()} logical CPUs, {torch.get_num_threads()} threads)"
    return str(device)


def _call_inputs(pairs, batch_size: int) -> list:
    if batch_size == 1:
        return [tuple(pair) for pair in pairs]
    return [list(pairs[start : start + batch_size]) for start in range(0, len(pairs), batch_size)]


def _timed_ms(run, inputs, device: torch.device) -> float:
    return timed_call(lambda: run(inputs), str(device))[1]


def timed_call(call, device: str):
    """``(call(), milliseconds)``: wall-clock time of one call, bracketed by a CUDA synchronise
    when ``device`` is a CUDA device (or ``"mixed"``: an ensemble with members on the GPU)."""
    _synchronize_for(device)
    start = time.perf_counter()
    value = call()
    _synchronize_for(device)
    return value, (time.perf_counter() - start) * 1000.0


def _synchronize_for(device) -> None:
    name = str(device)
    if (name.startswith("cuda") or name == "mixed") and torch.cuda.is_available():
        torch.cuda.synchronize(name if name.startswith("cuda") else None)


def _torch_device(detector) -> torch.device:
    device = getattr(detector, "device", None)
    if device is None:
        device = getattr(getattr(detector, "info", None), "device", None) or "cpu"
    return torch.device(device)


def _params(detector) -> int | None:
    params = getattr(getattr(detector, "info", None), "params", None)
    if params is not None:
        return int(params)
    model = getattr(detector, "model", None)
    if isinstance(model, torch.nn.Module):
        return sum(p.numel() for p in model.parameters())
    return None


def _detector_flops(detector, pair, device: torch.device) -> int | None:
    model = getattr(detector, "model", None)
    if not isinstance(model, torch.nn.Module):
        return None
    input_size = getattr(getattr(detector, "info", None), "input_size", None)
    height, width = (input_size, input_size) if input_size else pair[1].shape[:2]
    shape = (1, 3, height, width)
    inputs = (torch.zeros(shape, device=device), torch.zeros(shape, device=device))
    return count_flops(model, inputs)


def _example_tensors(model: torch.nn.Module, example_inputs) -> tuple[torch.Tensor, ...]:
    if isinstance(example_inputs, torch.Tensor):
        return (example_inputs,)
    if isinstance(example_inputs, int):
        example_inputs = (example_inputs, example_inputs)
    if isinstance(example_inputs, tuple | list) and all(isinstance(v, int) for v in example_inputs):
        height, width = example_inputs
        parameter = next(model.parameters(), None)
        device = parameter.device if parameter is not None else torch.device("cpu")
        shape = (1, 3, height, width)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)
    return tuple(example_inputs)


def cpu_model() -> str:
    """The processor's model name from ``/proc/cpuinfo`` ("model name"); elsewhere what ``platform`` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "CPU"
