"""bench/leakage.py on a few pairs: it finds the copies it planted and nothing else (no timing asserted)."""

import contextlib
import io

from bench import leakage


def test_the_benchmark_finds_its_planted_copies():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        leakage.timing(pairs=40, size=96, planted=6, rounds=1, seed=3)
    assert "6/6 planted copies found, 0 other matches" in out.getvalue()
    assert "audit matching for 40 pairs: median" in out.getvalue()
