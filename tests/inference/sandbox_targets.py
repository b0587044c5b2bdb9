"""Functions the sandbox tests run in a child: each misbehaves in one way."""

import ctypes
import os
import signal
import time

from inference.sandbox import report_stage


def echo(**arguments) -> dict:
    return {"arguments": arguments, "pid": os.getpid()}


def allocate(mb: int) -> dict:
    report_stage(f"allocating {mb} MB")
    block = bytearray(mb * 1024 * 1024)
    return {"allocated": len(block)}


def allocate_in_numpy(mb: int) -> dict:
    import numpy as np

    report_stage("in numpy")
    return {"sum": float(np.ones(mb * 1024 * 1024 // 8).sum())}


def sleep(seconds: float) -> dict:
    report_stage("sleeping")
    time.sleep(seconds)
    return {"slept": seconds}


def spin() -> dict:
    while True:
        pass


def abort() -> dict:
    os.abort()


def segfault() -> dict:
    ctypes.string_at(0)


def kill_self() -> dict:
    os.kill(os.getpid(), signal.SIGKILL)


def refuse(message: str) -> dict:
    raise ValueError(message)


def chatter() -> dict:
    print("not part of the answer")
    os.write(1, b"raw bytes on fd 1\n")
    return {"ok": True}
