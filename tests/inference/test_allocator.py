"""`inference.runtime.keep_freed_memory`: a batch's large buffers are reused by the next batch instead
of being mapped, zero-filled page by page and unmapped again (what made batch 8 no faster than batch 1)."""

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")

# In a fresh process: page faults of the last three of four same-sized 64 MiB blocks from glibc's
# malloc, each filled and freed. (torch allocates 64-byte aligned: glibc's aligned allocation leaves
# small remainders between the first blocks, so there the reuse starts after a few batches and
# depends on the heap's layout, see docs/engine.md; the bench measures it on real batches.)
_PROBE = """
import ctypes, resource, sys
from inference.runtime import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
size, faults = 64 * 2**20, []
for _ in range(4):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    libc.free(ctypes.c_void_p(block))
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(max(faults[1:]))
"""


def _last_buffer_faults(mode: str) -> int:
    answer = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True)
    return int(answer.stdout)


def test_a_freed_buffer_is_reused_without_page_faults_only_when_kept():
    pages = 64 * 2**20 // 4096
    assert _last_buffer_faults("default") > pages // 2  # glibc's default: mapped and faulted in again
    for _ in range(3):  # the heap's layout differs from process to process
        assert _last_buffer_faults("keep") < pages // 100  # kept: the same memory, already resident


def test_preparing_a_model_keeps_freed_memory():
    import torch

    from inference.runtime import RuntimeOptions, keep_freed_memory, prepare_model

    prepare_model(torch.nn.Conv2d(3, 4, 3), torch.device("cpu"), RuntimeOptions())
    assert keep_freed_memory.cache_info().currsize == 1 and keep_freed_memory() is True
