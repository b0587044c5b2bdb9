"""One sandbox for untrusted artefacts: a function run in a child process with hard limits.

`run_sandboxed("package.module:function", {...}, limits)` starts ``python -m inference.sandbox``
in a session of its own, hands it the request as one JSON line and reads JSON lines back; only
plain data crosses (no pickle either way). The child imports the target's module (and
``limits.preload``: the libraries whose import is the baseline, e.g. onnxruntime or torch),
measures its own address space, then limits itself before touching the artefact:

- ``RLIMIT_AS`` = that baseline + ``limits.memory_mb`` (an allocation beyond it fails at once, in
  the child only; a C++ ``bad_alloc`` or a ``MemoryError`` becomes a refusal);
- ``RLIMIT_CPU`` = the CPU used so far + ``limits.seconds`` (+1 s): a backstop if the parent is gone;
- no core files, one thread for OpenMP/BLAS, two malloc arenas (the environment it starts with).

The parent's wall clock starts when the child reports it is ready, so ``limits.seconds`` covers
everything done to the artefact and not Python's start-up; past it the whole process group is
killed. A target may call `report_stage(text)` so that a refusal says where it happened
("at 256 x 256 px"). Whatever happens to the child, the caller gets the function's JSON-able
result or a `SandboxRefusal` (the artefact's fault: memory, time, crash, or an error it raised);
`SandboxUnavailable` means the child could not start (the machine's fault, worth a retry).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_REPLY_BYTES = 1 << 20  # the child's answer is small JSON; more than this is refused unread
STDERR_TAIL_BYTES = 4000
ALLOCATION_FAILURES = ("MemoryError", "bad_alloc", "bad allocation", "Failed to allocate", "out of memory",
                       "Cannot allocate memory")  # fmt: skip
CHILD_ENVIRONMENT = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",  # each thread's malloc arena reserves 64 MB of address space otherwise
    "CUDA_VISIBLE_DEVICES": "",  # checks run on the CPU
    "PYTHONUNBUFFERED": "1",
}


@dataclass(frozen=True)
class SandboxLimits:
    """``memory_mb`` above the child's baseline, ``seconds`` of wall (and CPU) time after start-up."""

    memory_mb: int
    seconds: float
    startup_seconds: float = 120.0  # Python and the preloaded libraries; a loaded machine is slow
    preload: tuple[str, ...] = field(default=())


class SandboxRefusal(Exception):
    """The artefact was refused. ``kind``: memory | time | crashed | rejected; ``stage``: where it
    was (the target's last `report_stage`); the message says what happened, for its owner."""

    def __init__(self, kind: str, message: str, *, stage: str = "", limit: float = 0):
        super().__init__(message)
        self.kind, self.message, self.stage, self.limit = kind, message, stage, limit


class SandboxUnavailable(RuntimeError):
    """The child did not start (not the artefact's fault)."""


# --------------------------------------------------------------------------- the parent
def run_sandboxed(target: str, arguments: dict, limits: SandboxLimits) -> dict:
    """``target(**arguments)`` in a limited child; its result (JSON-able) or `SandboxRefusal`."""
    request = json.dumps({"target": target, "arguments": arguments, "memory_mb": limits.memory_mb,
                          "seconds": limits.seconds, "preload": list(limits.preload)})  # fmt: skip
    with tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "inference.sandbox"],
                cwd=ROOT,
                env={**os.environ, **CHILD_ENVIRONMENT},
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # its own process group: killed as a whole
            )
        except OSError as exc:  # no process to be had (EAGAIN, ENOMEM): the machine's state, not the file's
            raise SandboxUnavailable(f"the sandbox could not start: {exc}") from None
        try:
            process.stdin.write(request.encode() + b"\n")
            process.stdin.close()
            messages, timed_out = _read_messages(process, limits)
        except BrokenPipeError:
            messages, timed_out = [], False
        finally:
            kill_group(process)
        stderr.seek(max(0, stderr.seek(0, os.SEEK_END) - STDERR_TAIL_BYTES))
        tail = stderr.read().decode(errors="replace")
    return _outcome(messages, timed_out, process.returncode, tail, limits)


def run_on_bytes(target: str, data: bytes, arguments: dict, limits: SandboxLimits, *, suffix: str = "") -> dict:
    """`run_sandboxed` on an artefact held in memory: written to a private temporary file whose path
    the target gets as ``path`` (the bytes themselves never cross the pipe)."""
    with tempfile.TemporaryDirectory(prefix="sandbox-") as folder:
        path = Path(folder) / f"artefact{suffix}"
        path.write_bytes(data)
        return run_sandboxed(target, {"path": str(path), **arguments}, limits)


def _read_messages(process, limits: SandboxLimits) -> tuple[list[dict], bool]:
    """The child's JSON lines until it closes stdout or a deadline passes (then True)."""
    messages: list[dict] = []
    buffer, received = b"", 0
    deadline = time.monotonic() + limits.startup_seconds
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                return messages, True
            chunk = os.read(process.stdout.fileno(), 65536)
            if not chunk:
                return messages, False
            received += len(chunk)
            if received > MAX_REPLY_BYTES:
                return [*messages, {"crashed": "it answered more than 1 MB"}], False
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                try:
                    message = json.loads(line)
                except ValueError:
                    return [*messages, {"crashed": "it wrote something other than its answer"}], False
                messages.append(message)
                if "ready" in message:  # the limits start now
                    deadline = time.monotonic() + limits.seconds


def kill_group(process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # also whatever it started, and a child still running
    process.wait()
    process.stdout.close()


def _outcome(messages: list[dict], timed_out: bool, returncode: int, stderr: str, limits: SandboxLimits) -> dict:
    ready = any("ready" in message for message in messages)
    stages = [message["stage"] for message in messages if "stage" in message]
    stage = stages[-1] if stages else ""
    final = messages[-1] if messages else {}
    if "result" in final and final.get("seconds", 0) <= limits.seconds:
        return final["result"]
    if not ready:
        if timed_out:
            raise SandboxUnavailable(f"the sandbox did not start within {limits.startup_seconds:g} s")
        raise SandboxUnavailable(f"the sandbox did not start (exit {returncode}): {stderr.strip()[-1000:]}")
    if timed_out or "result" in final or returncode == -signal.SIGXCPU:  # a result, but late
        raise SandboxRefusal("time", f"took longer than {limits.seconds:g} s", stage=stage, limit=limits.seconds)
    if "rejected" in final:
        raise SandboxRefusal("rejected", final["rejected"], stage=stage)
    if "memory" in final or returncode == -signal.SIGKILL or any(word in stderr for word in ALLOCATION_FAILURES):
        # SIGKILL that the parent did not send: the kernel's out-of-memory killer
        message = f"needs more than {limits.memory_mb} MB of memory"
        raise SandboxRefusal("memory", message, stage=stage, limit=limits.memory_mb)
    how = final.get("crashed") or exit_reason(returncode)
    raise SandboxRefusal("crashed", f"crashed the process checking it ({how})", stage=stage)


def exit_reason(returncode: int) -> str:
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


# --------------------------------------------------------------------------- the child
_reply = None  # the child's protocol stream (its original stdout); None in any other process


def report_stage(text: str) -> None:
    """Say what the target does now (named in a refusal); nothing outside a sandbox child."""
    if _reply is not None:
        _send({"stage": text})


def _send(message: dict) -> None:
    _reply.write(json.dumps(message) + "\n")
    _reply.flush()


def address_space_bytes() -> int:
    """This process's virtual memory size (what ``RLIMIT_AS`` limits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


def limit_self(memory_mb: int, seconds: float | None, *, address_space: bool = True) -> int:
    """Limit this process (a sandbox child) to `memory_mb` of address space above what it has now and
    `seconds` more of CPU time (None: no CPU limit, for a long-lived child whose parent keeps a deadline
    per call); no core files. Returns the baseline in bytes. Without `address_space` (a CUDA child:
    the driver maps far more address space than it uses) only the CPU and core limits are set."""
    import resource

    def lower(kind: int, soft: int, hard: int) -> None:  # never above a limit the process already has
        ceiling = resource.getrlimit(kind)[1]
        if ceiling != resource.RLIM_INFINITY:
            soft, hard = min(soft, ceiling), min(hard, ceiling)
        resource.setrlimit(kind, (soft, hard))

    lower(resource.RLIMIT_CORE, 0, 0)
    if seconds is not None:
        used = resource.getrusage(resource.RUSAGE_SELF)
        cpu = int(used.ru_utime + used.ru_stime + seconds) + 2
        lower(resource.RLIMIT_CPU, cpu, cpu + 5)
    baseline = address_space_bytes()
    if address_space:
        limit = baseline + memory_mb * 1024 * 1024
        lower(resource.RLIMIT_AS, limit, limit)
    return baseline


def child_main() -> None:
    global _reply
    _reply = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever the target prints goes to stderr, never into the protocol
    request = json.loads(sys.stdin.readline())
    for name in request["preload"]:
        importlib.import_module(name)
    module, _, function_name = request["target"].partition(":")
    function = getattr(importlib.import_module(module), function_name)
    baseline = limit_self(request["memory_mb"], request["seconds"])
    _send({"ready": True, "baseline_mb": baseline // 2**20})
    start = time.monotonic()
    try:
        result = function(**request["arguments"])
        _send({"result": result, "seconds": time.monotonic() - start})
    except MemoryError:
        _send({"memory": True})
    except Exception as exc:  # noqa: BLE001 - the artefact's fault, reported as plain text
        message = str(exc).strip() or type(exc).__name__
        allocation = any(word in f"{type(exc).__name__} {message}" for word in ALLOCATION_FAILURES)
        _send({"memory": True} if allocation else {"rejected": message[:4000]})
    _reply.close()
    os._exit(0)  # no interpreter teardown: the artefact's objects may not survive it


if __name__ == "__main__":
    from inference import sandbox  # the importable module, whose `_reply` targets see

    sandbox.child_main()
