"""Where and how networks run: device choice, mixed precision, memory format, seeding.

Everything that decides *how* a forward pass executes lives here so that detectors, training
and the benchmark make the same choices:

- ``select_device("auto")`` picks CUDA when available, else the CPU;
- automatic mixed precision (bf16 where the GPU supports it, else fp16) is used on CUDA only:
  CPU autocast is slower than fp32 for these convolutional networks;
- ``channels_last`` memory format (NHWC) is used for convolutional networks;
- ``torch.compile`` is opt-in (off by default: its first call compiles for minutes on a CPU);
- freed tensor buffers stay in the process's heap for the next batch (``keep_freed_memory``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
import random
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class RuntimeOptions:
    """How a detector runs its network. ``amp=None`` means "on CUDA only"."""

    amp: bool | None = None
    channels_last: bool = True
    compile: bool = False
    batch_size: int = 8

    def amp_enabled(self, device: torch.device) -> bool:
        if device.type != "cuda":
            return False
        return True if self.amp is None else self.amp


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Return a ``torch.device``; ``"auto"`` means CUDA if available, else CPU.

    Raises ``ValueError`` when CUDA is asked for and is not available, instead of failing later
    inside the first forward pass.
    """
    if isinstance(device, torch.device):
        chosen = device
    elif device in (None, "auto"):
        chosen = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            chosen = torch.device(device)
        except RuntimeError as error:
            raise ValueError(f"unknown device {device!r}: use 'auto', 'cpu' or 'cuda[:N]'") from error
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for but CUDA is not available: use 'cpu' or 'auto'")
    return chosen


def autocast_dtype(device: torch.device) -> torch.dtype:
    """bf16 where the GPU supports it (no loss scaling needed), else fp16."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


def autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager:
    """Mixed-precision context for ``device``; a no-op when disabled or off CUDA."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=autocast_dtype(device))


def to_memory_format(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last and tensor.dim() == 4:
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
KEPT_FREE_BYTES = 1 << 30  # freed heap memory glibc may keep before it gives any back to the system


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc serve every allocation from its heap and keep up to ``KEPT_FREE_BYTES`` freed.

    By default glibc gives each block over its mmap threshold (at most 32 MB) its own mapping and
    unmaps it on free, so every forward pass at batch 8 maps its large activations afresh and the
    kernel zero-fills each page on first touch: about 5,000 page faults per pair for
    siamese-mobilenetv3 at 256 px, which made batch 8 no faster per pair than batch 1. From the
    heap, the next batch reuses the same memory. The process keeps its peak heap (a worker's RSS
    stays at its largest batch instead of returning to the system between batches). Called once
    per process by ``prepare_model``; a no-op off glibc. True when glibc took both settings.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_TRIM_THRESHOLD, KEPT_FREE_BYTES)) & bool(libc.mallopt(_M_MMAP_MAX, 0))


def prepare_model(model: nn.Module, device: torch.device, options: RuntimeOptions) -> nn.Module:
    """Move ``model`` to ``device`` in eval mode, with the memory format the options ask for.

    Returns the module to call for inference: the compiled wrapper when ``options.compile``,
    otherwise ``model`` itself (which keeps its parameters and state dict keys unchanged).
    """
    keep_freed_memory()
    model.to(device).eval()
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    if options.compile:
        return torch.compile(model)
    return model


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so runs repeat."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock timings measure the work itself."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
