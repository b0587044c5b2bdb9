"""Engine benchmark, measured side by side in one run on this machine.

1. End-to-end time of a run of N pairs x 5 detectors through a real Celery worker, divided by the
   sum of the bare model times of the same detectors on the same pairs (goal <= 1.3).
2. The same run again: speed-up from the result cache (goal >= 20x).
3. Batched vs batch-1 pairs/s of `siamese-mobilenetv3` (goal >= 1.5x).

Usage: .venv/bin/python bench/engine.py [--pairs 100] [--size 256]
Everything lives in a temporary folder (its own SQLite file and embedded Redis port).
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DETECTORS = ["absdiff", "ssim", "siamese-unet", "siamese-mobilenetv3", "siamese-resnet50"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configure(workdir: Path) -> dict:
    env = {
        "DJANGO_SETTINGS_MODULE": "diffplatform.settings.local",
        "DIFFPLATFORM_VAR_DIR": str(workdir),
        "EMBEDDED_REDIS_PORT": str(free_port()),
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    os.environ.update(env)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    return {**os.environ}


def start_worker(env: dict, workdir: Path):
    log = open(workdir / "worker.log", "wb")  # noqa: SIM115 - lives as long as the worker
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "diffplatform", "worker", "-Q", "cpu,gpu", "-c", "1", "-P", "solo",
         "-n", "bench@localhost", "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    from diffplatform.celery import app

    deadline = time.monotonic() + 60
    while not app.control.ping(destination=["bench@localhost"], timeout=0.5):
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError((workdir / "worker.log").read_text())
    return worker


def timed_run(experiment) -> tuple[float, object]:
    from experiments.models import Run
    from experiments.runs import services

    started = time.perf_counter()
    run = services.run_start(experiment=experiment)
    while not Run.objects.get(pk=run.pk).is_finished:
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    run.refresh_from_db()
    if run.state != "succeeded":
        raise RuntimeError(f"run {run.pk} {run.state}: {run.error}")
    return elapsed, run


def bare_model_seconds(name: str, pairs, size: int, seed: int) -> float:
    """The network's forward (or the classical detector's map) alone, on preprocessed inputs."""
    import torch

    from inference import create_detector
    from inference.catalogue import catalogue_entry
    from inference.runtime import seed_everything

    seed_everything(seed)
    learned = catalogue_entry(name).learned
    detector = create_detector(name, weights=None, device="cpu", **({"input_size": size} if learned else {}))
    if not learned:
        detector.predict(*pairs[0])
        started = time.perf_counter()
        for a, b in pairs:
            detector.predict(a, b)
        return time.perf_counter() - started
    xa = detector.preprocess([a for a, _ in pairs[:1]])
    xb = detector.preprocess([b for _, b in pairs[:1]])
    model = detector.model.eval()
    with torch.inference_mode():
        model(xa, xb)
        started = time.perf_counter()
        for a, b in pairs:
            model(detector.preprocess([a]), detector.preprocess([b]))
        return time.perf_counter() - started


def batching_ratio(pairs, size: int, repeats: int = 3) -> tuple[float, float]:
    from inference import create_detector

    detector = create_detector("siamese-mobilenetv3", weights=None, device="cpu", input_size=size)
    detector.predict_batch(pairs[:8])
    one, batched = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        for a, b in pairs:
            detector.predict(a, b)
        one.append(len(pairs) / (time.perf_counter() - started))
        started = time.perf_counter()
        for start in range(0, len(pairs), 8):
            detector.predict_batch(pairs[start : start + 8])
        batched.append(len(pairs) / (time.perf_counter() - started))
    return statistics.median(one), statistics.median(batched)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        env = configure(workdir)
        from django.contrib.auth import get_user_model

        from experiments.datasets.benchmark import synthetic_dataset_create
        from experiments.runs import services
        from experiments.runs.pair_inputs import load_pair_images

        user = get_user_model().objects.create_user("bench", password="bench-bench-bench")
        dataset = synthetic_dataset_create(owner=user, name="bench", pairs=args.pairs, size=args.size, seed=0)
        experiment = services.experiment_create(
            owner=user, dataset=dataset, name="bench", detectors=DETECTORS, input_size=args.size,
            detector_weights=dict.fromkeys(DETECTORS[2:], "random"),
        )  # fmt: skip
        worker = start_worker(env, workdir)
        try:
            first_s, _ = timed_run(experiment)
            second_s, second = timed_run(experiment)
        finally:
            worker.terminate()
            worker.wait(30)
        pairs = [load_pair_images(p) for p in dataset.pairs.all()]
        bare = {name: bare_model_seconds(name, pairs, args.size, experiment.seed) for name in DETECTORS}
        one, batched = batching_ratio(pairs[:32], args.size)
        from diffplatform.embedded_redis import stop_embedded_redis

        stop_embedded_redis(int(env["EMBEDDED_REDIS_PORT"]))

    cached = sum(1 for r in second.results.all() if r.from_cache)
    print(f"Engine benchmark: {args.pairs} pairs x {len(DETECTORS)} detectors at {args.size}px, CPU, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"{'detector':<22}{'bare model s':>14}")
    for name, seconds in bare.items():
        print(f"{name:<22}{seconds:>14.2f}")
    total = sum(bare.values())
    print(f"{'sum of bare models':<22}{total:>14.2f}")
    print(f"end-to-end run (queue -> succeeded): {first_s:.2f} s")
    print(f"1. end-to-end / bare models = {first_s / total:.2f}   (goal <= 1.3)")
    print(f"2. identical second run: {second_s:.2f} s, {cached}/{second.results.count()} results from the cache, "
          f"speed-up {first_s / second_s:.1f}x   (goal >= 20x)")  # fmt: skip
    print(f"3. siamese-mobilenetv3 pairs/s: batch 1 {one:.1f}, batch 8 {batched:.1f}, "
          f"ratio {batched / one:.2f}x   (goal >= 1.5x)")  # fmt: skip


if __name__ == "__main__":
    main()
