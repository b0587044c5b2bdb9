"""Peak memory of a block of inference work, measured honestly for the device it ran on.

- CUDA: `torch.cuda.max_memory_allocated` after resetting the peak (kind `cuda_peak_allocated`).
- CPU: the process's resident set size sampled every 2 ms while the block runs; the peak minus
  the size before the block (kind `cpu_rss_peak_delta`). It counts what the block newly took from
  the OS; memory the allocator already held and reused is not counted, so it is a lower bound.
"""

import threading
from contextlib import contextmanager
from dataclasses import dataclass

import psutil

_MIB = 1024 * 1024
_SAMPLE_S = 0.002


@dataclass
class MemoryReading:
    kind: str = ""
    peak_mb: float | None = None


@contextmanager
def measure_peak_memory(device: str = "cpu"):
    reading = MemoryReading()
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        yield reading
        reading.kind = "cuda_peak_allocated"
        reading.peak_mb = torch.cuda.max_memory_allocated(device) / _MIB
        return
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(_SAMPLE_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield reading
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        reading.kind = "cpu_rss_peak_delta"
        reading.peak_mb = (peak[0] - baseline) / _MIB
