"""Test plug-ins for dead workers (tests/hardening/test_dead_worker.py), torch-free.

- ``slow-diff``: the absolute difference, `SLOW_S` seconds per pair, so a kill lands mid-run.
- ``worker-killer``: kills its own process on every prediction, as the kernel's out-of-memory
  killer would: the task that runs it can never finish.

Load them with ``DIFFPLATFORM_DETECTOR_MODULES=tests.plugins.dead_worker_detectors``.
"""

from __future__ import annotations

import os
import signal
import time

import numpy as np

from inference.detectors.base import ClassicalDetector
from inference.registry import register_detector

SLOW = "slow-diff"
KILLER = "worker-killer"
SLOW_S = 0.25


def slow_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    time.sleep(SLOW_S)
    return (np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(axis=2) / 255.0).astype(np.float32)


def kill_own_process(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable: the process is gone")


@register_detector(SLOW, family="classical", learned=False, description="Slow absolute difference (test plug-in).")
def build_slow_diff(*, name: str, weights=None, device=None):
    return ClassicalDetector(name, slow_difference)


@register_detector(KILLER, family="classical", learned=False, description="Kills its worker (test plug-in).")
def build_worker_killer(*, name: str, weights=None, device=None):
    return ClassicalDetector(name, kill_own_process)
