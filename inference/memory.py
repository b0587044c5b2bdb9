"""Peak memory of a block of inference work: the one memory meter (engine, profiler, CLI).

Each reading says which quantity it is (``kind``) and on which device (``device``); MiB = 2**20 bytes.

- ``"cuda_peak_allocated"`` (CUDA): ``torch.cuda.max_memory_allocated`` over the block, after
  resetting the peak. Resetting sets the peak to what is allocated at that moment, so the weights
  and every tensor alive before the block are included; memory the caching allocator holds unused
  and the CUDA context are not.
- ``"cpu_peak_rss"`` (CPU, the default): the process's peak resident set size during the block,
  everything the process holds included (the weights, the libraries, other loaded models). Where
  the kernel lets a process reset its high-water mark (``/proc/self/clear_refs``, Linux >= 4.0),
  it is exact: ``VmHWM`` after the reset; elsewhere RSS is sampled every 2 ms by a helper thread
  (plus before and after), so spikes shorter than that can be missed.
- ``"cpu_rss_peak_delta"`` (CPU, asked for with ``cpu_kind``): the sampled peak minus the RSS just
  before the block: what the block newly took from the OS. Memory the allocator already held and
  reused does not show, so it is a lower bound of the block's working memory (the profiler's figure).
"""

import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

_MIB = 1024 * 1024
_SAMPLE_S = 0.002

CUDA_PEAK_ALLOCATED = "cuda_peak_allocated"
CPU_PEAK_RSS = "cpu_peak_rss"
CPU_RSS_PEAK_DELTA = "cpu_rss_peak_delta"

MEMORY_KINDS = {
    CUDA_PEAK_ALLOCATED: "peak CUDA memory allocated during inference (torch.cuda.max_memory_allocated), weights included",
    CPU_PEAK_RSS: "peak resident set size of the worker process during inference, weights included",
    CPU_RSS_PEAK_DELTA: "growth of the process's resident set size during the block (a lower bound)",
}

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


@dataclass
class MemoryReading:
    kind: str = ""
    device: str = ""
    peak_mb: float | None = None
    baseline_mb: float | None = None  # CPU: RSS just before the block; CUDA: allocated just before


def memory_kind_for(device: str) -> str:
    """The kind of figure :func:`measure_peak_memory` gives on ``device`` by default."""
    return CUDA_PEAK_ALLOCATED if str(device).startswith("cuda") else CPU_PEAK_RSS


def memory_device(device: str) -> str:
    """``"cpu"`` or ``"cuda:<index>"`` (the index resolved when ``device`` is plain ``"cuda"``)."""
    device = str(device)
    if not device.startswith("cuda"):
        return "cpu"
    if ":" in device:
        return device
    import torch

    return f"cuda:{torch.cuda.current_device()}"


@contextmanager
def measure_peak_memory(device: str = "cpu", *, cpu_kind: str = CPU_PEAK_RSS):
    """Measure the block's peak memory on ``device``; the reading is filled in when the block ends."""
    reading = MemoryReading(device=memory_device(device))
    if reading.device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(reading.device)
        reading.baseline_mb = torch.cuda.memory_allocated(reading.device) / _MIB
        try:
            yield reading
        finally:
            reading.kind = CUDA_PEAK_ALLOCATED
            reading.peak_mb = torch.cuda.max_memory_allocated(reading.device) / _MIB
        return
    if cpu_kind not in (CPU_PEAK_RSS, CPU_RSS_PEAK_DELTA):
        raise ValueError(f"cpu_kind must be {CPU_PEAK_RSS!r} or {CPU_RSS_PEAK_DELTA!r}, got {cpu_kind!r}")
    process = psutil.Process()
    baseline = process.memory_info().rss
    exact = cpu_kind == CPU_PEAK_RSS and _reset_high_water_mark()
    with _sampled_peak(process, baseline, sample=not exact) as peak:
        yield reading
    reading.kind = cpu_kind
    reading.baseline_mb = baseline / _MIB
    highest = peak[0]
    if exact:
        hwm = _high_water_mark()
        highest = max(highest, hwm) if hwm is not None else highest
    reading.peak_mb = (highest - baseline if cpu_kind == CPU_RSS_PEAK_DELTA else highest) / _MIB


@contextmanager
def _sampled_peak(process, baseline: int, *, sample: bool):
    """``[peak RSS]``: sampled every 2 ms while the block runs (when ``sample``), and at its end."""
    peak = [baseline]
    done = threading.Event()

    def sampler():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(_SAMPLE_S)

    thread = threading.Thread(target=sampler, daemon=True) if sample else None
    if thread is not None:
        thread.start()
    try:
        yield peak
    finally:
        done.set()
        if thread is not None:
            thread.join()
        peak[0] = max(peak[0], process.memory_info().rss)


def _reset_high_water_mark() -> bool:
    """Reset the kernel's peak-RSS counter (``VmHWM``) to the current RSS; False where not possible."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return _high_water_mark() is not None


def _high_water_mark() -> int | None:
    try:
        match = re.search(r"^VmHWM:\s+(\d+)\s+kB", _STATUS.read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None
