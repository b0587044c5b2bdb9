"""Inference overhead and speed benchmark for the learned detectors (random weights).

For each learned detector it measures, in the same run and interleaved (so machine load hits
both alike):

- platform: ``detector.predict(a, b)`` on 256x256 uint8 pairs, batch 1, including
  preprocessing (resize, normalise) and postprocessing (sigmoid, resize back, to NumPy);
- bare: ``detector.forward_logits(xa, xb)`` on already preprocessed tensors (the module the
  platform calls, BatchNorm folded, under ``torch.inference_mode`` and the same AMP setting on
  CUDA): the network alone.

It prints medians after warm-up, the ratio platform / bare (goal <= 1.10) and the
``siamese-mobilenetv3`` latency (goal <= 45 ms per pair at 256x256 on the CPU).

Run from the repository root: ``python -m bench.inference [--repeats 20] [--device cpu]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: bench/ itself would shadow the `inference` package on sys.path.
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np
import torch

from inference.registry import create_detector, detector_info, list_detectors
from inference.runtime import seed_everything, synchronize

RATIO_GOAL = 1.10
MOBILENET_GOAL_MS = 45.0
FAST_DETECTOR = "siamese-mobilenetv3"
HEAVY = {"siamese-resnet50", "siamese-vgg16", "resnet50-compare-head"}


def timed_ms(run, device: torch.device) -> float:
    synchronize(device)
    started = time.perf_counter()
    run()
    synchronize(device)
    return (time.perf_counter() - started) * 1000.0


def bench_detector(name: str, *, size: int, repeats: int, warmup: int, device: str) -> dict:
    seed_everything(0)
    detector = create_detector(name, weights=None, device=device, input_size=size)
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    xa, xb = detector.preprocess(a), detector.preprocess(b)

    def bare():
        detector.forward_logits(xa, xb)

    def platform():
        detector.predict(a, b)

    for _ in range(warmup):
        platform()
        bare()
    platform_ms, bare_ms = [], []
    for _ in range(repeats):
        platform_ms.append(timed_ms(platform, detector.device))
        bare_ms.append(timed_ms(bare, detector.device))
    platform_median, bare_median = statistics.median(platform_ms), statistics.median(bare_ms)
    return {
        "detector": name,
        "params": detector.info.params,
        "device": detector.info.device,
        "repeats": repeats,
        "platform_ms": platform_median,
        "bare_ms": bare_median,
        "ratio": platform_median / bare_median,
    }


def print_table(rows: list[dict]) -> None:
    header = f"{'detector':24} {'params':>11} {'platform ms':>12} {'bare ms':>9} {'ratio':>6}  goal"
    print(header)
    print("-" * len(header))
    for row in rows:
        verdict = "ok" if row["ratio"] <= RATIO_GOAL else f"MISS (> {RATIO_GOAL})"
        print(
            f"{row['detector']:24} {row['params']:>11,} {row['platform_ms']:>12.1f} "
            f"{row['bare_ms']:>9.1f} {row['ratio']:>6.3f}  {verdict}"
        )
    fast = next((r for r in rows if r["detector"] == FAST_DETECTOR), None)
    if fast is not None:
        verdict = "ok" if fast["platform_ms"] <= MOBILENET_GOAL_MS else "MISS"
        size = f"{fast['size']}x{fast['size']}"
        print(
            f"\n{FAST_DETECTOR}: {fast['platform_ms']:.1f} ms/pair at {size} on {fast['device']} "
            f"(goal <= {MOBILENET_GOAL_MS:.0f} ms): {verdict}"
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    learned = [n for n in list_detectors() if detector_info(n).learned]
    parser.add_argument("--detectors", nargs="+", default=learned, choices=learned)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=20, help="light networks")
    parser.add_argument("--heavy-repeats", type=int, default=5, help="ResNet-50 / VGG16")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    rows = []
    for name in args.detectors:
        repeats = args.heavy_repeats if name in HEAVY else args.repeats
        row = bench_detector(name, size=args.size, repeats=repeats, warmup=args.warmup, device=args.device)
        rows.append({**row, "size": args.size})
        print(f"  {name}: {row['platform_ms']:.1f} ms (bare {row['bare_ms']:.1f})", flush=True)
    print()
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
