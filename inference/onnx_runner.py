"""A user's ONNX model in runs: `SandboxedOnnxDetector`, the `OnnxDetector` contract with the model
itself in a sandboxed child process, one per (model, worker process), kept while the model cache keeps it.

Uploaded models never run in the worker (issue 26): the child (``python -m inference.onnx_runner``, a
session of its own, the sandbox's environment) imports onnxruntime, limits its address space to that
baseline + ``memory_mb`` (`inference.sandbox.limit_self`; on CUDA the provider's ``gpu_mem_limit``
instead: the driver maps far more address space than it uses), opens the session as runs always did
(graph optimisations on), says it is ready, then answers one call at a time until its stdin closes (so
it ends with its worker, however that ends).

Framing, both ways, no pickle: a 4-byte little-endian length, a JSON header and, when the header has
``shape`` and ``dtype``, the array's raw bytes (read back with `numpy.frombuffer`: one copy each way). A
call is A and B as uint8 N x h x w x 3, sized here as the in-process detector sizes them; the answer is
float32 N x h x w probabilities, accepted only in exactly that shape, or ``{"error", "memory"}``. Each
call has a deadline. Past it, or when the child dies, hits its memory limit or answers anything else,
its process group is killed and the call raises `OnnxModelFailed` naming the size ("the model needs
more than 2048 MB at 1024 x 1024 px"); the worker goes on, and the next call starts a new child.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import select
import struct
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from inference.detectors.onnx_model import OnnxDetector, OnnxModelFile
from inference.sandbox import ALLOCATION_FAILURES, CHILD_ENVIRONMENT, ROOT, exit_reason, kill_group, limit_self

HEADER = struct.Struct("<I")
MAX_HEADER_BYTES = 64 * 1024
STDERR_TAIL_BYTES = 4000
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)  # Linux
PIPE_BYTES = 1 << 20  # the default /proc/sys/fs/pipe-max-size
_open: weakref.WeakSet = weakref.WeakSet()


class OnnxModelFailed(RuntimeError):
    """The model could not answer a call (memory, time, crash, error); the message is for its owner."""


@dataclass(frozen=True)
class RunnerLimits:
    """``memory_mb`` above the child's baseline; ``call_seconds`` of wall time per call."""

    memory_mb: int
    call_seconds: float
    startup_seconds: float = 120.0  # Python, onnxruntime and the session: a loaded machine is slow


class _Ended(Exception):
    """The child closed its answer stream (it died) or took longer than the deadline (``timed_out``)."""

    def __init__(self, timed_out: bool = False):
        super().__init__()
        self.timed_out = timed_out


# --------------------------------------------------------------------------- the frames
def frame(header: dict, array: np.ndarray | None = None) -> list:
    """The buffers of one message: length, JSON header and, with an array, its raw bytes (no copy)."""
    if array is not None:
        array = np.ascontiguousarray(array)
        header = {**header, "shape": list(array.shape), "dtype": array.dtype.str}
    text = json.dumps(header).encode()
    parts = [HEADER.pack(len(text)) + text]
    if array is not None and array.size:
        parts.append(memoryview(array).cast("B"))
    return parts


def array_size(header: dict) -> int:
    return int(np.prod(header["shape"], dtype=np.int64)) * np.dtype(header["dtype"]).itemsize


# --------------------------------------------------------------------------- the worker's side
class SandboxedOnnxDetector(OnnxDetector):
    """`OnnxDetector`'s contract (predict, predict_batch, tiling, info, device); the session in a child."""

    def __init__(self, name: str, model_file: OnnxModelFile, device: str = "cpu", *, limits: RunnerLimits):
        self.model_file, self.limits, self.asked_device = model_file, limits, str(device)
        self.process, self._stderr = None, None
        self._lock = threading.RLock()  # a call, or closing: one at a time
        ready = self._start()
        self.describe(name, model_file, ready["device"], input_names=ready["inputs"], any_batch=ready["any_batch"],
                      params=ready["params"])  # fmt: skip
        self.info.extra["sandbox"] = {"memory_mb": limits.memory_mb, "call_seconds": limits.call_seconds}
        self.scaling = None
        _open.add(self)

    def probabilities(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        count, height, width = a.shape[:3]
        where = f"at {height} x {width} px" + (f" in a batch of {count}" if count > 1 else "")
        with self._lock:
            if self.process is None:
                self._start()
            deadline = time.monotonic() + self.limits.call_seconds
            try:
                self._send([*frame({"call": True}, a), *frame({}, b)])
                header = self._receive_header(deadline)
                if "error" in header:
                    raise self._failure(header, where, timed_out=False)
                if header.get("dtype") != "<f4" or header.get("shape") != [count, height, width]:
                    raise OnnxModelFailed(
                        f"the model answered {header.get('shape')} ({header.get('dtype')}) for a {height} x {width} "
                        "input; a change map at the input's size was expected"
                    )
                data = self._read_exactly(array_size(header), deadline)
            except _Ended as ended:
                raise self._failure({}, where, timed_out=ended.timed_out) from None
            except BrokenPipeError:
                raise self._failure({}, where, timed_out=False) from None
            except OnnxModelFailed:
                self.close()
                raise
        return np.frombuffer(data, np.float32).reshape(count, height, width)

    def close(self) -> None:
        """End the child (its whole process group); a later call starts a new one."""
        with self._lock:
            process, self.process = self.process, None
            self._end(process)

    def _end(self, process) -> None:
        if process is not None:
            kill_group(process)
            with contextlib.suppress(OSError):
                process.stdin.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __del__(self, suppress=contextlib.suppress):  # bound now: at interpreter exit the module may be gone
        with suppress(Exception):
            self.close()

    # ----------------------------------------------------------------------- the child
    def _start(self) -> dict:
        environment = {**os.environ, **CHILD_ENVIRONMENT}
        if self.asked_device.startswith("cuda"):  # the GPU the worker was given, not none
            environment.pop("CUDA_VISIBLE_DEVICES")
            if "CUDA_VISIBLE_DEVICES" in os.environ:
                environment["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - kept open for the child's life, closed by close()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "inference.onnx_runner"], cwd=ROOT, env=environment, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=self._stderr, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            self.close()
            raise OnnxModelFailed(f"the model's sandbox could not start: {exc}") from None
        for pipe in (self.process.stdin, self.process.stdout):  # fewer, larger transfers: a map is megabytes
            with contextlib.suppress(OSError):
                fcntl.fcntl(pipe.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
        request = {"path": self.model_file.path, "contract": asdict(self.model_file.contract),
                   "device": self.asked_device, "memory_mb": self.limits.memory_mb}  # fmt: skip
        where = "while onnxruntime creates its session"
        try:
            self._send(frame(request))
            ready = self._receive_header(time.monotonic() + self.limits.startup_seconds)
        except (_Ended, BrokenPipeError) as exc:
            raise self._failure({}, where, timed_out=getattr(exc, "timed_out", False)) from None
        if "ready" not in ready:
            raise self._failure(ready, where, timed_out=False)
        return ready

    def _send(self, parts: list) -> None:
        descriptor = self.process.stdin.fileno()
        for part in parts:
            view = memoryview(part)
            while view:
                view = view[os.write(descriptor, view) :]

    def _receive_header(self, deadline: float) -> dict:
        (length,) = HEADER.unpack(self._read_exactly(HEADER.size, deadline))
        if length > MAX_HEADER_BYTES:
            raise OnnxModelFailed("the model's process answered something other than a change map")
        try:
            header = json.loads(bytes(self._read_exactly(length, deadline)))
        except ValueError:
            header = None
        if not isinstance(header, dict):
            raise OnnxModelFailed("the model's process answered something other than a change map")
        return header

    def _read_exactly(self, size: int, deadline: float) -> bytearray:
        buffer = bytearray(size)
        view, got = memoryview(buffer), 0
        descriptor = self.process.stdout.fileno()
        poll = select.poll()
        poll.register(descriptor, select.POLLIN)
        while got < size:
            left = deadline - time.monotonic()
            if left <= 0 or not poll.poll(left * 1000):
                raise _Ended(timed_out=True)
            read = os.readv(descriptor, [view[got:]])
            if read == 0:
                raise _Ended()
            got += read
        return buffer

    def _failure(self, header: dict, where: str, *, timed_out: bool) -> OnnxModelFailed:
        """Why the child could not answer, for the model's owner; the child is ended."""
        process = self.process
        if process is not None and not timed_out:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)  # it is dying: its exit status tells how
        returncode = process.returncode if process is not None else None
        tail = self._stderr_tail()
        self.close()
        if timed_out:
            return OnnxModelFailed(f"the model took longer than {self.limits.call_seconds:g} s {where}")
        died_of_memory = returncode == -9 or any(word in tail for word in ALLOCATION_FAILURES)
        if header.get("memory") or ("error" not in header and died_of_memory):
            return OnnxModelFailed(f"the model needs more than {self.limits.memory_mb} MB {where}")
        if "error" in header:
            return OnnxModelFailed(f"the model failed {where}: {header['error']}")
        how = exit_reason(returncode) if returncode is not None else "no answer"
        return OnnxModelFailed(f"the model's process crashed {where} ({how})")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(max(0, self._stderr.seek(0, os.SEEK_END) - STDERR_TAIL_BYTES))
        return self._stderr.read().decode(errors="replace")


@atexit.register
def close_all() -> None:
    """End every child this process started (the model cache closes them when it drops them, too)."""
    for detector in list(_open):
        detector.close()


# --------------------------------------------------------------------------- in the child
def _read_message(stream) -> tuple[dict, np.ndarray | None] | None:
    """One message from the worker (None at the end of its stream)."""
    prefix = stream.read(HEADER.size)
    if len(prefix) < HEADER.size:
        return None
    header = json.loads(stream.read(HEADER.unpack(prefix)[0]))
    if "shape" not in header:
        return header, None
    data = stream.read(array_size(header))
    return header, np.frombuffer(data, np.dtype(header["dtype"])).reshape(header["shape"])


def _answer(reply, header: dict, array: np.ndarray | None = None) -> None:
    for part in frame(header, array):
        reply.write(part)
    reply.flush()


def _error(exc: BaseException) -> dict:
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    allocation = isinstance(exc, MemoryError) or any(word in message for word in ALLOCATION_FAILURES)
    return {"error": message[:2000], "memory": allocation}


def child_main() -> None:
    reply = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # whatever onnxruntime prints goes to stderr, never into the frames
    stream = sys.stdin.buffer
    request, _ = _read_message(stream)
    import onnx
    import onnxruntime  # noqa: F401 - imported before the limit: part of the baseline

    from inference.detectors.onnx_model import (
        CPU_PROVIDER,
        OnnxContract,
        count_parameters,
        open_session,
        session_probabilities,
    )

    cuda = str(request["device"]).startswith("cuda")
    limit_self(request["memory_mb"], None, address_space=not cuda)
    contract = request["contract"]
    contract = OnnxContract(**{**contract, "mean": tuple(contract["mean"]), "std": tuple(contract["std"])})
    try:
        data = Path(request["path"]).read_bytes()
        session = open_session(data, request["device"], gpu_memory_mb=request["memory_mb"] if cuda else None)
        inputs = session.get_inputs()
        ready = {"ready": True, "inputs": [item.name for item in inputs], "params": count_parameters(onnx.load_from_string(data)),
                 "any_batch": not isinstance(inputs[0].shape[0], int),
                 "device": "cpu" if session.get_providers()[0] == CPU_PROVIDER else request["device"]}  # fmt: skip
        del data
    except BaseException as exc:  # noqa: BLE001 - the model's fault, said to the worker as plain text
        _answer(reply, _error(exc))
        os._exit(0)
    _answer(reply, ready)
    while (message := _read_message(stream)) is not None:
        second = _read_message(stream)
        if second is None:
            break
        try:
            probabilities = session_probabilities(session, ready["inputs"], message[1], second[1], contract)
            _answer(reply, {}, np.ascontiguousarray(probabilities, np.float32))
        except BaseException as exc:  # noqa: BLE001
            _answer(reply, _error(exc))
            break
    reply.close()
    os._exit(0)  # no interpreter teardown: the model's objects may not survive it


if __name__ == "__main__":
    from inference import onnx_runner  # the importable module

    onnx_runner.child_main()
