"""`inference.runtime.single_threaded_blas`: after a BLAS call no helper thread stays busy beside the
network. OpenBLAS's threads spin for more work after each multi-threaded call; on a small machine
that took the CPUs from the next forward pass (see docs/engine.md)."""

import os
import subprocess
import sys

import pytest

# In a fresh process: the CPU time it uses while its only thread sleeps, right after a float dot
# product big enough for OpenBLAS to split across its threads (spinning threads show as CPU time).
_PROBE = """
import resource, sys, time
import numpy as np
import torch
threads = torch.get_num_threads()
if sys.argv[1] == "single":
    from inference.runtime import single_threaded_blas
    assert single_threaded_blas() >= 1
values = np.random.default_rng(0).random(1 << 18)
spent = []
for _ in range(3):
    np.dot(values, values)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_utime + usage.ru_stime
    time.sleep(0.2)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    spent.append(usage.ru_utime + usage.ru_stime - before)
assert torch.get_num_threads() == threads  # torch's own threads are left as they were
print(min(spent))
"""


def _cpu_seconds_while_idle(mode: str) -> float:
    env = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}  # as a fresh worker
    answer = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, env=env)
    return float(answer.stdout)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="OpenBLAS runs one thread on one CPU: nothing spins")
def test_no_blas_thread_spins_after_a_call_only_when_limited():
    assert _cpu_seconds_while_idle("default") > 0.02  # OpenBLAS's default: its threads busy-wait
    assert _cpu_seconds_while_idle("single") < 0.01


def test_every_loaded_openblas_is_limited_to_one_thread():
    from threadpoolctl import threadpool_info

    from inference.runtime import single_threaded_blas

    single_threaded_blas()
    blas = [library for library in threadpool_info() if library["user_api"] == "blas"]
    assert len(blas) >= 2  # NumPy's and SciPy's at least (OpenCV's where its wheel bundles one)
    assert all(library["num_threads"] == 1 for library in blas)
