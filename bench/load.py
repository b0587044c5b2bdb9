"""The machine's load while something was timed, and the verdict rule that load and spread decide."""

import os
import time
from dataclasses import dataclass, field

import psutil


def _own_cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            pass
    return total


@dataclass
class LoadMeter:
    """The machine's load over a stretch of time: load averages, and the share of all CPUs that
    processes other than `pids` (this benchmark and its worker) used."""

    pids: list[int]
    started: float = field(default=0.0)
    busy: float = field(default=0.0)
    own: float = field(default=0.0)
    load_before: tuple = field(default=())

    def __enter__(self):
        self.started, self.busy, self.own = time.monotonic(), _busy_seconds(), _own_cpu_seconds(self.pids)
        self.load_before = os.getloadavg()
        return self

    def __exit__(self, *exc):
        wall = time.monotonic() - self.started
        busy = _busy_seconds() - self.busy
        own = _own_cpu_seconds(self.pids) - self.own
        cpus = psutil.cpu_count() or 1
        self.others_share = max(0.0, busy - own) / (wall * cpus) if wall > 0 else 0.0
        self.load_after = os.getloadavg()
        return False

    def summary(self) -> str:
        return (f"load avg 1 min {self.load_before[0]:.2f} -> {self.load_after[0]:.2f}, "
                f"other processes {100 * self.others_share:.0f}% of {psutil.cpu_count()} CPUs")  # fmt: skip


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


BUSY_SHARE = 0.2  # other processes using more than this share of the CPUs in a round: no verdict


def verdict(median: float, spread: float, goal: float, sense: str, busy: float = 0.0) -> str:
    margin = abs(median - goal)
    if busy > BUSY_SHARE:
        return f"NO VERDICT (other processes used up to {100 * busy:.0f}% of the CPUs: not a quiet machine)"
    if spread >= margin:
        return f"NO VERDICT (spread {spread:.2f} >= margin {margin:.2f} to the goal: too noisy)"
    met = median <= goal if sense == "<=" else median >= goal
    return "PASS" if met else "FAIL"
