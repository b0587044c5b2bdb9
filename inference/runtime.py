"""Where and how networks run: device choice, mixed precision, memory format, seeding.

Everything that decides *how* a forward pass executes lives here so that detectors, training
and the benchmark make the same choices:

- ``select_device("auto")`` picks CUDA when available, else the CPU;
- automatic mixed precision (bf16 where the GPU supports it, else fp16) is used on CUDA only:
  CPU autocast is slower than fp32 for these convolutional networks;
- ``channels_last`` memory format (NHWC) is used for convolutional networks;
- BatchNorm is folded into the convolution before it for inference (``InferenceModule``);
- ``torch.compile`` is opt-in (off by default: its first call compiles for minutes on a CPU);
- freed tensor buffers stay in the process's heap for the next batch (``keep_freed_memory``);
- NumPy, SciPy and OpenCV compute BLAS on the calling thread (``single_threaded_blas``).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import itertools
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
    fold_batch_norm: bool = True

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


@functools.cache
def single_threaded_blas() -> int:
    """Run the OpenBLAS of NumPy, SciPy and OpenCV (each ships its own) on one thread; the number limited.

    After each multi-threaded call (``np.dot`` on float arrays of a few thousand values, as the
    per-pair ranking metrics make) OpenBLAS's helper threads busy-wait for more work for about
    0.1 CPU-second before they sleep. Next to torch's own threads on a small machine they take the
    CPUs from the network: on 2 CPUs a siamese-mobilenetv3 pair predicted right after the metrics of
    the previous batch took 30-50 ms instead of 14 ms. The platform's parallel work is torch's (and
    its worker processes); BLAS calls outside it are small. ``OPENBLAS_NUM_THREADS`` is set too, for
    a library loaded later. Called once per process by ``prepare_model`` and the run engine.
    """
    import cv2  # noqa: F401 - loaded here so that its OpenBLAS is limited too
    import scipy.linalg  # noqa: F401 - the same for SciPy's
    from threadpoolctl import threadpool_info, threadpool_limits

    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    threadpool_limits(limits=1, user_api="blas")
    return sum(1 for library in threadpool_info() if library["user_api"] == "blas")


def prepare_model(model: nn.Module, device: torch.device, options: RuntimeOptions) -> InferenceModule:
    """Move ``model`` to ``device`` in eval mode, with the memory format the options ask for.

    Returns what to call for inference (``InferenceModule``); ``model`` itself keeps its parameters
    and state dict keys unchanged (training and checkpoints use it).
    """
    keep_freed_memory()
    single_threaded_blas()
    model.to(device).eval()
    if options.channels_last:
        model.to(memory_format=torch.channels_last)
    return InferenceModule(model, options)


class InferenceModule:
    """What a detector calls for inference (in eval mode): its model with every BatchNorm that follows
    a convolution folded into that convolution (``fold_batch_norm``), compiled when ``options.compile``.

    Folding applies the eval-mode normalisation to the convolution's weights once, so a forward pass
    makes one pass over each activation instead of two: siamese-mobilenetv3 at 256 px on 2 CPUs ran
    25 % faster per pair at batch 8, 15 % at batch 1 (docs/engine.md). Outputs equal the model's to
    float rounding (about 1e-6). The folded copy is rebuilt whenever the model's parameters or
    buffers change (training on the platform, loaded weights: their version counters move), so it
    never computes with stale weights. It holds a second copy of the weights.
    """

    def __init__(self, model: nn.Module, options: RuntimeOptions):
        self.model, self.options = model, options
        self._stamp: tuple | None = None
        self._module: nn.Module | None = None
        self._tensors: dict = {}

    def __call__(self, *inputs):
        return self.current()(*inputs)

    def current(self) -> nn.Module:
        """The module inference runs now (built again first when the model's weights changed)."""
        stamp = _state_stamp(self.model, self._tensors)
        if stamp != self._stamp:
            self._module, self._stamp = self._build(), stamp
        return self._module

    def _build(self) -> nn.Module:
        module = self.model
        if self.options.fold_batch_norm and any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()
        ):
            module = fold_batch_norm(module)
            if self.options.channels_last:
                module.to(memory_format=torch.channels_last)
        return torch.compile(module) if self.options.compile else module


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of ``model`` in which each BatchNorm fed only by a convolution is folded into
    it (``torch.fx.experimental.optimization.fuse``). Where fx cannot trace a module (Python control
    flow on tensors), its children are folded one by one."""
    import copy

    with torch.no_grad():
        return _fold(copy.deepcopy(model).eval())


def _fold(module: nn.Module) -> nn.Module:
    from torch.fx.experimental.optimization import fuse

    children = list(module.named_children())
    if not children:
        return module
    try:
        return fuse(module, inplace=True)
    except Exception:  # noqa: BLE001 - fx could not trace it (control flow, untraceable calls): fold inside
        for name, child in children:
            setattr(module, name, _fold(child))
        return module


class _Registrations:
    """Counts every parameter, buffer and submodule registered on any module in this process (torch's
    global registration hooks), so a module's list of tensors is walked again only after one was."""

    count = 0

    @classmethod
    def bump(cls, *_args) -> None:
        cls.count += 1


nn.modules.module.register_module_parameter_registration_hook(_Registrations.bump)
nn.modules.module.register_module_buffer_registration_hook(_Registrations.bump)
nn.modules.module.register_module_module_registration_hook(_Registrations.bump)


def _state_stamp(model: nn.Module, cached: dict) -> tuple:
    """Version counter and storage of every parameter and buffer: changes when any of them does
    (in-place updates move the version, reassigned ``.data`` or a device move the storage). The list
    of tensors is kept in ``cached`` until a registration anywhere may have changed it."""
    if cached.get("registrations") != _Registrations.count:
        cached["tensors"] = list(itertools.chain(model.parameters(), model.buffers()))
        cached["registrations"] = _Registrations.count
    stamp = []
    for tensor in cached["tensors"]:
        try:
            version = tensor._version
        except RuntimeError:  # an inference tensor has no version counter (it cannot be trained)
            version = None
        stamp.append((version, tensor.data_ptr()))
    return tuple(stamp)


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
