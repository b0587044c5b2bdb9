"""bench/scale.py end to end on a tiny run: its own SQLite, embedded Redis and daphne (a subprocess,
since it configures Django itself); every timed request answered 200 and the leaderboard came from
the engine's finish with one row per detector on every pair (the script raises otherwise)."""

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_scale_benchmark_runs_on_a_tiny_run():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_SETTINGS"))}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "bench.scale", "--pairs", "8", "--detectors", "2", "--pool-pairs", "4",
         "--repeats", "1", "--pages", "2", "--gallery-repeats", "1", "--threshold-probe"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "8 pairs (32 px) x 2 detectors = 16 results" in out
    # the 4098-group score histograms stored per result, packed as the engine stores them: about 3 kB
    # on these noisy 32 px maps (the rest of the metrics is about 0.5 kB; as JSON lists they were 25 kB)
    assert 1 < float(re.search(r"stored metrics per result: ([\d.]+) kB", out).group(1)) < 20
    for request in ("page /runs/{id}/ (leaderboard)", "API leaderboard/?format=csv", "API results/ first page",
                    "API results/ walk 2 pages", "page /runs/{id}/gallery/", "threshold=0.25 (cold"):  # fmt: skip
        assert request in out, out
