"""Engine benchmark: ratios measured side by side, in alternating rounds, with the load they ran under.

Each round measures, back to back and in alternating order (odd rounds reverse it), the bare models
on both sides of the run (their mean counts), so that a change in the machine's load or speed hits
both sides of a ratio alike:

1. end-to-end: a run of N pairs x 5 detectors through a real Celery worker (queue -> succeeded),
   every result computed (the result cache is emptied first) and every pair decoded (each round
   runs on its own copy of the synthetic dataset: the same pixels under new files); the worker
   holds the networks since an unmeasured warm-up run, as it does after its first run / bare models: the same
   detectors on the same pairs, the network's forward alone (`forward_logits`: the module the
   engine calls, BatchNorm folded) on preprocessed inputs (classical detectors: their map), in this
   process, in the calls the engine makes: the pairs it times for latency alone (batch 1: 10 per
   detector, `engine.latency_sample`), the rest at its batch size (8) (goal <= 1.25). The report
   also gives the ratio to every pair at batch 8, which counts those latency samples as the
   platform's time;
2. cached: the same run again, every result from the result cache: speed-up (goal >= 20x);
3. batching: `siamese-mobilenetv3` pairs/s of `predict_batch` at batch 8 / `predict` at batch 1,
   on the same decoded pairs, interleaved 8 pairs at a time (goal >= 1.5x).

Each ratio is reported as the median over the rounds with its spread (max - min). A verdict (PASS
or FAIL) is printed only when the spread is smaller than the distance from the median to the goal;
otherwise (or when other processes used more than 20 % of the CPUs in a round) the benchmark says
the machine was too noisy to tell. The load is recorded per round:
os.getloadavg(), the CPU count, and the share of the CPUs used by other processes (psutil: all
CPU time on the machine minus this process's and the worker's).

With --rss-pairs N (e.g. 2000) it also runs one detector (--rss-detector, at --rss-size px, 32) over
N pairs and samples the worker's resident memory over the run: RSS after the first 100 pairs vs
the largest RSS after that (goal: within 10 %).

Usage: .venv/bin/python -m bench.engine [--pairs 100] [--size 256] [--rounds 3] [--rss-pairs 2000]
Everything lives in a temporary folder (its own SQLite file and embedded Redis port).
"""

import argparse
import gc
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.bare_models import BareModel, batching_pairs_per_s
from bench.load import LoadMeter, verdict

ROOT = Path(__file__).resolve().parents[1]
DETECTORS = ["absdiff", "ssim", "siamese-unet", "siamese-mobilenetv3", "siamese-resnet50"]
GOALS = {  # name: (goal, "<=" or ">=")
    "end-to-end / bare": (1.25, "<="),
    "cached speed-up": (20.0, ">="),
    "batch 8 / batch 1": (1.5, ">="),
}
RSS_GOAL = 0.10
POLL_S = 0.25  # how often the benchmark looks at a run's state (the measured time is the run's own)
DATASET_SEED = 0  # the synthetic pairs: the same pixels in every round's copy
SEED = 0  # the learned detectors' seeded random weights: the same networks in the worker and here


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
        [sys.executable, "-m", "celery", "-A", "diffplatform", "worker", "-Q", "cpu,gpu,webhooks", "-c", "1", "-P", "solo",
         "-n", "bench@localhost", "--without-gossip", "--without-mingle", "-l", "WARNING"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    from diffplatform.celery import app

    deadline = time.monotonic() + 60
    while not app.control.ping(destination=["bench@localhost"], timeout=0.5):
        if time.monotonic() > deadline or worker.poll() is not None:
            raise RuntimeError((workdir / "worker.log").read_text())
    return worker


# -------------------------------------------------------------------------------- measurements
def timed_run(experiment) -> tuple[float, object]:
    """Seconds from asking for the run until the worker marked it finished (its `finished_at`), so
    how often this process looks does not count, and looking rarely takes no CPU from the worker."""
    from experiments.models import Run
    from experiments.runs import services

    started = time.time()
    run = services.run_start(experiment=experiment)
    while not Run.objects.get(pk=run.pk).is_finished:
        time.sleep(POLL_S)
    run.refresh_from_db()
    if run.state != "succeeded":
        raise RuntimeError(f"run {run.pk} {run.state}: {run.error}")
    return run.finished_at.timestamp() - started, run


def forget_results() -> None:
    """Drop the result cache's entries (only those: the broker shares the Redis), so the next run
    computes every result again on the networks its worker already holds."""
    from django.core.cache import cache

    client = cache._cache.get_client(None)
    keys = list(client.scan_iter(match="*:result:*", count=1000))
    if keys:
        client.delete(*keys)


def one_round(index: int, context: dict) -> dict:
    from experiments.datasets.benchmark import synthetic_dataset_create
    from experiments.runs import services

    # The same pixels under new files each round, so the run decodes every pair as a first run on a
    # dataset does (the worker keeps pairs it decoded: a second run on one dataset would not).
    user = context["user"]
    dataset = synthetic_dataset_create(owner=user, name=f"bench-{index}", pairs=context["pair_count"],
                                       size=context["size"], seed=DATASET_SEED)  # fmt: skip
    experiment = services.experiment_create(
        owner=user, dataset=dataset, name=f"bench-{index}", detectors=DETECTORS, input_size=context["size"],
        splits=context["splits"], seed=SEED, detector_weights=dict.fromkeys(DETECTORS[2:], "random"),
    )  # fmt: skip
    figures: dict = {}

    def end_to_end():
        forget_results()
        figures["run_s"], _ = timed_run(experiment)
        figures["cached_s"], run = timed_run(experiment)
        figures["cached"] = (sum(1 for r in run.results.all() if r.from_cache), run.results.count())

    bare_sides = []

    def bare():
        models = context["bare"]
        bare_sides.append({name: models[name].seconds() for name in DETECTORS})
        if "bare8" not in figures:
            figures["bare8"] = sum(models[name].seconds(latency_alone=False) for name in DETECTORS)

    def batching():
        figures["batch1"], figures["batchN"] = batching_pairs_per_s(context["mobilenet"], context["batch_pairs"])

    # The bare models are timed on both sides of the run (their mean is the round's figure), so a drift
    # of the machine's speed during the round weighs on both sides of the ratio alike.
    steps = [bare, end_to_end, bare, batching]
    with LoadMeter(context["pids"]) as load:
        for step in steps if index % 2 == 0 else reversed(steps):
            step()
    figures["bare"] = {name: statistics.fmean(side[name] for side in bare_sides) for name in DETECTORS}
    bare_total = sum(figures["bare"].values())
    figures.update(
        load=load,
        bare_total=bare_total,
        ratios={
            "end-to-end / bare": figures["run_s"] / bare_total,
            "cached speed-up": figures["run_s"] / figures["cached_s"],
            "batch 8 / batch 1": figures["batchN"] / figures["batch1"],
        },
    )
    return figures


# ---------------------------------------------------------------------------------------- RSS
def rss_run(context: dict, pairs: int, size: int, detector: str) -> dict:
    """One detector over `pairs` pairs; the worker's RSS sampled with the run's progress."""
    from experiments.datasets.benchmark import synthetic_dataset_create
    from experiments.models import Run
    from experiments.runs import services

    user, worker = context["user"], psutil.Process(context["worker_pid"])
    dataset = synthetic_dataset_create(owner=user, name="bench-rss", pairs=pairs, size=size, seed=1)
    splits = sorted(set(dataset.pairs.values_list("split", flat=True)))
    learned = detector.startswith("siamese")
    experiment = services.experiment_create(
        owner=user, dataset=dataset, name="bench-rss", detectors=[detector], splits=splits,
        input_size=size if learned else None, detector_weights={detector: "random"} if learned else {},
    )  # fmt: skip
    run = services.run_start(experiment=experiment)
    samples = []  # (pairs done, RSS MiB)
    started = time.perf_counter()
    while True:
        state = Run.objects.values("progress_done", "state").get(pk=run.pk)
        samples.append((state["progress_done"], worker.memory_info().rss / 2**20))
        if state["state"] in ("succeeded", "failed", "partial", "cancelled"):
            break
        time.sleep(0.2)
    if state["state"] != "succeeded":
        raise RuntimeError(f"RSS run ended {state['state']}")
    after_100 = next((rss for done, rss in samples if done >= 100), samples[-1][1])
    later = [rss for done, rss in samples if done >= 100]
    return {
        "pairs": run.progress_total, "seconds": time.perf_counter() - started, "detector": detector, "size": size,
        "rss_100": after_100, "rss_max": max(later), "rss_end": samples[-1][1], "samples": samples,
    }  # fmt: skip


def rss_report(figures: dict) -> None:
    growth = (figures["rss_max"] - figures["rss_100"]) / figures["rss_100"]
    print(f"\nWorker memory over {figures['pairs']} pairs of {figures['detector']} at {figures['size']} px "
          f"({figures['seconds']:.1f} s):")  # fmt: skip
    step = max(1, len(figures["samples"]) // 10)
    print("  pairs done -> RSS MiB: " + ", ".join(f"{d}: {r:.0f}" for d, r in figures["samples"][::step]))
    print(f"  RSS after the first 100 pairs {figures['rss_100']:.0f} MiB, largest after {figures['rss_max']:.0f} MiB, "
          f"at the end {figures['rss_end']:.0f} MiB: growth {100 * growth:+.1f}%   (goal <= +10%): "
          f"{'PASS' if growth <= RSS_GOAL else 'FAIL'}")  # fmt: skip


# ---------------------------------------------------------------------------------------- main
def report(args, rounds: list[dict], scored: int) -> None:
    print(f"\nEngine benchmark: {scored} pairs x {len(DETECTORS)} detectors at {args.size} px, CPU "
          f"({psutil.cpu_count()} CPUs, torch threads {context_threads()}), {len(rounds)} rounds")  # fmt: skip
    print(f"{'round':<7}{'run s':>8}{'bare s':>8}{'cached s':>9}{'b1 p/s':>8}{'b8 p/s':>8}  load")
    for index, figures in enumerate(rounds, start=1):
        print(f"{index:<7}{figures['run_s']:>8.2f}{figures['bare_total']:>8.2f}{figures['cached_s']:>9.2f}"
              f"{figures['batch1']:>8.1f}{figures['batchN']:>8.1f}  {figures['load'].summary()}")  # fmt: skip
    print("bare model s per detector (median): " + ", ".join(
        f"{name} {statistics.median(f['bare'][name] for f in rounds):.2f}" for name in DETECTORS))  # fmt: skip
    from experiments.runs.measurement import LATENCY_SAMPLES

    strict = [f["run_s"] / f["bare8"] for f in rounds]
    print(
        f"end-to-end / bare with every pair at batch 8 (the {LATENCY_SAMPLES} latency samples per detector "
        f"counted as the platform's time, not the model's): median {statistics.median(strict):.2f} "
        f"(rounds: {', '.join(f'{v:.2f}' for v in strict)}; bare {statistics.median(f['bare8'] for f in rounds):.2f} s)"
    )
    cached, total = rounds[-1]["cached"]
    print(f"cached re-run: {cached}/{total} results from the cache")
    print(f"\n{'ratio':<20}{'median':>8}{'spread':>8}  {'goal':<8}verdict")
    for name, (goal, sense) in GOALS.items():
        values = [f["ratios"][name] for f in rounds]
        median, spread = statistics.median(values), max(values) - min(values)
        shown = ", ".join(f"{v:.2f}" for v in values)
        busy = max(f["load"].others_share for f in rounds)
        print(f"{name:<20}{median:>8.2f}{spread:>8.2f}  {sense} {goal:<5}{verdict(median, spread, goal, sense, busy)}"
              f"   (rounds: {shown})")  # fmt: skip
    shares = [f["load"].others_share for f in rounds]
    print(
        f"load: other processes used {100 * min(shares):.0f}-{100 * max(shares):.0f}% of the CPUs; "
        f"1-min load average up to {max(max(f['load'].load_before[0], f['load'].load_after[0]) for f in rounds):.2f}"
    )


def context_threads() -> int:
    import torch

    return torch.get_num_threads()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-pairs", type=int, default=400, help="pairs timed for the batching ratio")
    parser.add_argument("--rss-pairs", type=int, default=0, help="also run N pairs and sample the worker's RSS")
    parser.add_argument("--rss-size", type=int, default=32)
    parser.add_argument("--rss-detector", default="siamese-mobilenetv3")
    args = parser.parse_args()
    if args.rounds < 3:
        parser.error("--rounds must be at least 3: a spread needs three rounds")
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        env = configure(workdir)
        from django.contrib.auth import get_user_model

        from experiments.datasets.benchmark import synthetic_dataset_create
        from experiments.runs import services
        from experiments.runs.engine import BATCH_SIZE
        from experiments.runs.pair_inputs import load_pair_images
        from experiments.runs.selectors import scored_pairs
        from inference import create_detector

        user = get_user_model().objects.create_user("bench", password="bench-bench-bench")
        dataset = synthetic_dataset_create(
            owner=user, name="bench", pairs=args.pairs, size=args.size, seed=DATASET_SEED
        )
        splits = sorted(set(dataset.pairs.values_list("split", flat=True)))
        worker = start_worker(env, workdir)
        try:
            # The worker's first run pays its imports, networks and the first call at each batch shape the
            # measured runs make (latency samples alone, batches of 7, 8 and the last one): one run of
            # the same size on other pixels, not measured.
            small = synthetic_dataset_create(owner=user, name="warm-up", pairs=args.pairs, size=args.size, seed=7)
            warm = services.experiment_create(
                owner=user, dataset=small, name="warm-up", detectors=DETECTORS, input_size=args.size,
                splits=sorted(set(small.pairs.values_list("split", flat=True))), seed=SEED,
                detector_weights=dict.fromkeys(DETECTORS[2:], "random"),
            )  # fmt: skip
            warm_s, _ = timed_run(warm)
            scored = list(scored_pairs(services.experiment_create(
                owner=user, dataset=dataset, name="pairs", detectors=DETECTORS[:1], splits=splits)))  # fmt: skip
            pairs = [load_pair_images(p) for p in scored]
            mobilenet = create_detector("siamese-mobilenetv3", weights="random", device="cpu", input_size=args.size)
            batch_pairs = [pairs[index % len(pairs)] for index in range(args.batch_pairs)]  # the pairs again past N
            mobilenet.predict_batch(batch_pairs[:BATCH_SIZE])  # its batch shape, warm
            mobilenet.predict(*batch_pairs[0])
            bare_models = {name: BareModel.build(name, pairs, args.size, SEED) for name in DETECTORS}
            context = {
                "bare": bare_models, "user": user, "pair_count": args.pairs, "pairs": pairs, "size": args.size,
                "splits": splits,
                "mobilenet": mobilenet, "batch_pairs": batch_pairs, "pids": [os.getpid(), worker.pid],
                "worker_pid": worker.pid,
            }  # fmt: skip
            # As the worker does once its first network is loaded (experiments.runs.model_cache): what this
            # process holds now is kept out of the garbage collector's way, so no full collection (0.3 s
            # here) falls inside a timed section on one side of a ratio only.
            gc.collect()
            gc.freeze()
            rounds = []
            for index in range(args.rounds):
                rounds.append(one_round(index, context))
                print(f"round {index + 1}/{args.rounds}: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in rounds[-1]["ratios"].items()), flush=True)  # fmt: skip
            rss = rss_run(context, args.rss_pairs, args.rss_size, args.rss_detector) if args.rss_pairs else None
        finally:
            worker.terminate()
            worker.wait(30)
            from diffplatform.embedded_redis import stop_embedded_redis

            stop_embedded_redis(int(env["EMBEDDED_REDIS_PORT"]))
    print(
        f"\nwarm-up run ({args.pairs} other pairs: the worker's imports, networks and batch shapes; not measured): "
        f"{warm_s:.1f} s"
    )
    report(args, rounds, len(scored))
    if rss:
        rss_report(rss)


if __name__ == "__main__":
    main()
