"""Scale benchmark: a dataset of 10,000 pairs, a finished run of 100,000 results, and the pages and
API that read it, timed through a live daphne server on loopback.

1. Dataset: `--pairs` procedural pairs at `--size` px (32), generated and stored through the
   services (`synthetic_dataset_create`: every pair checked, its own A, B and label PNG files).
2. Run: `--detectors` detectors (the catalogue's, then `external:` prediction sets named only, as
   needed) x every pair, one `Result` row each, written by `bulk_create` in batches as the engine
   writes them. The rows are not computed by the detectors: their metrics are real outputs of
   `inference.evaluation.pair_metrics` (full 4096-group score histograms included, as the engine
   stores them) on a pool of `--pool-pairs` pairs' labels x each detector's made-up probability map,
   reused across the pairs; their pictures point at that pool's PNG files. The leaderboard is then
   built by the engine's own finish (`experiments.runs.engine.finish_run`: aggregation, consensus
   maps, the state change), timed, with this process's peak RSS.
3. HTTP: daphne serves the run page, `GET /api/v1/runs/{id}/results/` (first page, a cursor walk,
   ordered by IoU), the leaderboard CSV (API and page) and the gallery, each `--repeats` times:
   p50/p95 with the machine's load while they ran (`bench.load.LoadMeter`: 1-min load average and
   the share of the CPUs other processes used). With `--threshold-probe`, one leaderboard at another
   threshold (recomputed from every stored histogram), cold then cached.
4. There is no per-pair results CSV endpoint for a run (the per-pair CSV exists only inside a batch
   job's archive, `experiments.reporting.results.results_csv`); its cost over the whole run is timed in
   this process instead.

Worker memory over a long run is `bench.engine --rss-pairs 2000` (not repeated here).

Usage: nice -n 10 .venv/bin/python -m bench.scale [--pairs 10000] [--detectors 10] [--repeats 20]
Everything lives in a temporary folder (its own SQLite file and embedded Redis port).
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import requests
from tqdm import tqdm

from bench.engine import ROOT, configure, free_port
from bench.load import LoadMeter
from bench.loadtest import wait_http

BATCH = 1000  # result rows per bulk_create (the engine writes a batch of pairs per upsert)
LATENCY_SAMPLES = 10  # timed pairs per detector, as experiments.runs.measurement samples them


# ------------------------------------------------------------------------------------ the data
def make_dataset(user, pairs: int, size: int):
    from experiments.datasets.benchmark import synthetic_dataset_create

    started = time.perf_counter()
    with tqdm(total=pairs, desc="dataset pairs", unit="pair") as bar:
        dataset = synthetic_dataset_create(owner=user, name="scale", pairs=pairs, size=size, seed=0,
                                           progress=bar.update)  # fmt: skip
    return dataset, time.perf_counter() - started


def detector_names(user, dataset, count: int) -> list[str]:
    """The catalogue's detectors, then `external:` prediction sets (rows only: nothing runs them)."""
    from experiments.models import PredictionSet
    from inference.catalogue import catalogue_names

    names = list(catalogue_names())[:count]
    for index in range(count - len(names)):
        made = PredictionSet.objects.create(owner=user, dataset=dataset, name=f"scale-{index}", kind="probability",
                                            archive_sha256="0" * 64)  # fmt: skip
        names.append(made.detector_name)
    return names


def metric_pool(dataset, detectors: list[str], pool_pairs: int, seed: int = 0) -> list[list[dict]]:
    """`pool[j][d]`: what the engine stores for pool pair j and detector d (metrics and picture keys),
    from a probability map made up per detector (the label, blurred by noise of a detector's own level)."""
    from experiments import storage
    from experiments.runs.engine import build_result_entry
    from experiments.runs.pair_inputs import PairInputs
    from inference.images import load_mask

    rng = np.random.default_rng(seed)
    pool = []
    pairs = list(dataset.pairs.order_by("pk")[:pool_pairs])
    for j, pair in enumerate(tqdm(pairs, desc="metric pool", unit="pair")):
        label = load_mask(storage.read_bytes(pair.label))[0]
        entries = []
        for d in range(len(detectors)):
            noise = 0.15 + 0.5 * d / max(len(detectors) - 1, 1)
            prob = np.clip(label * 0.8 + rng.normal(0.1, noise, label.shape), 0, 1).astype(np.float32)
            item = PairInputs(pair=pair, a=None, b=None, label=label, valid=None)
            entries.append(build_result_entry(f"scale-pool/{j}-{d}", item, prob, 0.5))
        pool.append(entries)
    return pool


def make_run(user, dataset, detectors: list[str], size: int):
    from django.utils import timezone

    from experiments.models import Run, RunState
    from experiments.runs import services

    learned = [name for name in detectors if name.startswith(("siamese", "resnet"))]
    experiment = services.experiment_create(
        owner=user, dataset=dataset, name="scale", detectors=detectors, input_size=size,
        splits=sorted(set(dataset.pairs.values_list("split", flat=True))),
        detector_weights=dict.fromkeys(learned, "random"),
    )  # fmt: skip
    info = {name: {"device": "cpu", "input_size": size, "precision": "fp32"} for name in detectors}
    return Run.objects.create(
        experiment=experiment, state=RunState.RUNNING, started_at=timezone.now(),
        progress_total=dataset.pairs.count() * len(detectors), environment={"detector_info": info},
    )  # fmt: skip


def write_results(run, dataset, detectors: list[str], pool) -> float:
    from django.db import transaction

    from experiments.models import Result

    pair_ids = list(dataset.pairs.order_by("pk").values_list("pk", flat=True))
    timed = {d: set(np.linspace(0, len(pair_ids) - 1, LATENCY_SAMPLES).astype(int)) for d in range(len(detectors))}
    total = len(pair_ids) * len(detectors)
    started = time.perf_counter()
    with tqdm(total=total, desc="result rows", unit="row") as bar:
        for d, name in enumerate(detectors):
            for start in range(0, len(pair_ids), BATCH):
                rows = []
                for i in range(start, min(start + BATCH, len(pair_ids))):
                    entry = pool[i % len(pool)][d]
                    metrics = entry["metrics"]
                    is_timed = i in timed[d]
                    rows.append(Result(
                        run=run, pair_id=pair_ids[i], detector=name, metrics=metrics, iou=metrics.get("iou"),
                        f1=metrics.get("f1"), latency_ms=20.0 + d if is_timed else None,
                        peak_memory_mb=400.0 if is_timed else None, weights="random",
                        heatmap_key=entry["heatmap_key"], mask_key=entry["mask_key"],
                        error_map_key=entry["error_map_key"],
                    ))  # fmt: skip
                with transaction.atomic():
                    Result.objects.bulk_create(rows)
                bar.update(len(rows))
    run.progress_done = total
    run.save(update_fields=["progress_done"])
    return time.perf_counter() - started


class PeakRss:
    """A process's largest RSS (MiB) while the block runs, sampled every 50 ms (default: this one)."""

    def __init__(self, pid: int | None = None):
        self.pid = pid

    def __enter__(self):
        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        process = psutil.Process(self.pid)
        while not self._stop.is_set():
            self.peak = max(self.peak, process.memory_info().rss / 2**20)
            self._stop.wait(0.05)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False


def finish(run) -> dict:
    from experiments.models import Run
    from experiments.runs.engine import finish_run

    before = psutil.Process().memory_info().rss / 2**20
    with PeakRss() as rss, LoadMeter([os.getpid()]) as load:
        started = time.perf_counter()
        finish_run(run.pk)
        seconds = time.perf_counter() - started
    run = Run.objects.get(pk=run.pk)
    if run.state != "succeeded":
        raise RuntimeError(f"the run ended {run.state}: {run.error}")
    rows = {row["detector"]: row.get("n_pairs") for row in run.leaderboard["detectors"]}
    expected = run.progress_total // len(run.experiment.detectors)
    if rows != dict.fromkeys(run.experiment.detectors, expected):
        raise RuntimeError(f"the leaderboard's rows {rows} are not every detector on {expected} pairs")
    return {"seconds": seconds, "rss_before": before, "rss_peak": rss.peak, "load": load, "run": run}


def storage_figures(run, workdir: Path) -> dict:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT avg(length(metrics)), max(length(metrics)) FROM experiments_result WHERE run_id = %s",
                       [run.pk])  # fmt: skip
        mean_bytes, max_bytes = cursor.fetchone()
        cursor.execute("SELECT length(leaderboard) FROM experiments_run WHERE id = %s", [run.pk])
        (leaderboard_bytes,) = cursor.fetchone()
    database = sum(path.stat().st_size for path in workdir.glob("*.sqlite3*"))
    return {"metrics_mean": mean_bytes, "metrics_max": max_bytes, "leaderboard": leaderboard_bytes,
            "database": database}  # fmt: skip


# ------------------------------------------------------------------------------------- HTTP
def start_server(env: dict, workdir: Path, port: int):
    log = open(workdir / "daphne.log", "wb")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port),
                               "diffplatform.asgi:application"], cwd=ROOT, env=env, stdout=log,
                              stderr=subprocess.STDOUT)  # fmt: skip
    # no Celery worker here: the health check may say so; that it answers is enough
    wait_http(f"http://127.0.0.1:{port}/healthz/", process=server, log=workdir / "daphne.log", any_status=True)
    return server


def clients(user, base: str) -> tuple[requests.Session, requests.Session]:
    """(API client with a token, browser client with a session cookie)."""
    from django.conf import settings
    from django.test import Client
    from rest_framework.authtoken.models import Token

    api = requests.Session()
    api.headers["Authorization"] = f"Token {Token.objects.get_or_create(user=user)[0].key}"
    browser_login = Client()
    browser_login.force_login(user)
    browser = requests.Session()
    browser.cookies.set(settings.SESSION_COOKIE_NAME, browser_login.cookies[settings.SESSION_COOKIE_NAME].value)
    return api, browser


class Timings:
    def __init__(self, pids: list[int]):
        self.pids, self.rows = pids, []

    def measure(self, kind: str, repeats: int, call) -> None:
        """`call()` -> (response bytes) `repeats` times, after one untimed call; the server's peak RSS."""
        call()
        values, sizes = [], []
        with LoadMeter(self.pids) as load, PeakRss(self.pids[1]) as rss:
            for _ in range(repeats):
                started = time.perf_counter()
                sizes.append(call())
                values.append(1000 * (time.perf_counter() - started))
        self.rows.append((kind, values, statistics.median(sizes), load, rss.peak))
        print(f"  {kind}: p50 {statistics.median(values):.0f} ms ({load.summary()})", flush=True)

    def report(self) -> str:
        lines = [f"{'request':<42}{'n':>4}{'p50 ms':>9}{'p95 ms':>9}{'kB':>8}{'srv MiB':>9}  load while timed"]
        for kind, values, size, load, rss in self.rows:
            lines.append(f"{kind:<42}{len(values):>4}{statistics.median(values):>9.0f}"
                         f"{float(np.percentile(values, 95)):>9.0f}{size / 1000:>8.0f}{rss:>9.0f}  {load.summary()}")  # fmt: skip
        return "\n".join(lines)


def get(session: requests.Session, url: str, timeout: float = 300) -> int:
    response = session.get(url, timeout=timeout)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url}: HTTP {response.status_code} {response.text[:300]}")
    return len(response.content)


def cursor_walk(api: requests.Session, url: str, pages: int) -> int:
    """The first page and `pages - 1` more by following `next`; the bytes read."""
    total, seen = 0, set()
    for _ in range(pages):
        response = api.get(url, timeout=300)
        response.raise_for_status()
        total += len(response.content)
        page = response.json()
        ids = {item["id"] for item in page["results"]}
        if seen & ids:
            raise RuntimeError(f"cursor page {url} repeats results already seen")
        seen |= ids
        url = page["next"]
        if not url:
            break
    return total


def http_timings(run, user, base: str, pids: list[int], args) -> tuple[Timings, list[str]]:
    api, browser = clients(user, base)
    timings, notes = Timings(pids), []
    runs_api = f"{base}/api/v1/runs/{run.pk}"
    r = args.repeats
    timings.measure("page /runs/{id}/ (leaderboard)", r, lambda: get(browser, f"{base}/runs/{run.pk}/"))
    timings.measure("page /runs/{id}/leaderboard.csv", r, lambda: get(browser, f"{base}/runs/{run.pk}/leaderboard.csv"))
    timings.measure("API leaderboard/?format=csv", r, lambda: get(api, f"{runs_api}/leaderboard/?format=csv"))
    timings.measure("API leaderboard/ (JSON)", r, lambda: get(api, f"{runs_api}/leaderboard/"))
    timings.measure("API results/ first page (50)", r, lambda: get(api, f"{runs_api}/results/"))
    timings.measure(f"API results/ walk {args.pages} pages (50 each)", max(3, r // 4),
                    lambda: cursor_walk(api, f"{runs_api}/results/", args.pages))  # fmt: skip
    timings.measure("API results/?page_size=200", r, lambda: get(api, f"{runs_api}/results/?page_size=200"))
    timings.measure("API results/?ordering=-iou first page", r, lambda: get(api, f"{runs_api}/results/?ordering=-iou"))
    one = run.experiment.detectors[0]
    timings.measure("API results/?detector=(one)&iou_max=0.5", r,
                    lambda: get(api, f"{runs_api}/results/?detector={one}&iou_max=0.5"))  # fmt: skip
    # Last: it reads every result of the run on each view, and the server keeps the memory it took.
    if args.gallery_repeats:
        timings.measure("page /runs/{id}/gallery/ (first page)", args.gallery_repeats,
                        lambda: get(browser, f"{base}/runs/{run.pk}/gallery/", timeout=900))  # fmt: skip
    if args.threshold_probe:
        for label in ("cold", "cached"):
            started = time.perf_counter()
            with LoadMeter(pids) as load, PeakRss(pids[1]) as rss:
                get(api, f"{runs_api}/leaderboard/?threshold=0.25", timeout=900)
            notes.append(f"API leaderboard/?threshold=0.25 ({label}, once): {time.perf_counter() - started:.1f} s, "
                         f"server peak RSS {rss.peak:.0f} MiB ({load.summary()})")  # fmt: skip
            print("  " + notes[-1], flush=True)
    return timings, notes


def per_pair_csv(run) -> tuple[float, int]:
    """What a per-pair CSV export of the whole run would cost in-process (no endpoint serves one)."""
    from experiments.reporting.results import results_csv

    started = time.perf_counter()
    text = results_csv(run.results.select_related("pair").order_by("pk").iterator(chunk_size=2000))
    return time.perf_counter() - started, len(text)


# ---------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=32, help="pair images, px")
    parser.add_argument("--detectors", type=int, default=10)
    parser.add_argument("--pool-pairs", type=int, default=100, help="pairs whose metrics and pictures are reused")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--pages", type=int, default=5, help="cursor pages walked")
    parser.add_argument(
        "--gallery-repeats",
        type=int,
        default=0,
        help="time the gallery N times (0: not; it holds every result's histograms in the server)",
    )
    parser.add_argument("--threshold-probe", action="store_true", help="also time one leaderboard at threshold 0.25")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as folder:
        workdir = Path(folder)
        env = {**configure(workdir), "API_THROTTLE_USER": "1000000/minute", "OMP_NUM_THREADS": "1"}
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user("scale", password="scale-scale-scale")
        dataset, dataset_s = make_dataset(user, args.pairs, args.size)
        detectors = detector_names(user, dataset, args.detectors)
        pool = metric_pool(dataset, detectors, min(args.pool_pairs, args.pairs))
        run = make_run(user, dataset, detectors, args.size)
        insert_s = write_results(run, dataset, detectors, pool)
        print("building the leaderboard (engine finish) ...", flush=True)
        finished = finish(run)
        run = finished["run"]
        sizes = storage_figures(run, workdir)
        csv_s, csv_bytes = per_pair_csv(run)
        port = free_port()
        server = start_server(env, workdir, port)
        try:
            timings, notes = http_timings(run, user, f"http://127.0.0.1:{port}", [os.getpid(), server.pid], args)
        finally:
            server.terminate()
            server.wait(30)
            from diffplatform.embedded_redis import stop_embedded_redis

            stop_embedded_redis(int(env["EMBEDDED_REDIS_PORT"]))
    rows = run.progress_total
    print(f"\nScale benchmark: {args.pairs} pairs ({args.size} px) x {len(detectors)} detectors = {rows} results; "
          f"SQLite + embedded Redis, daphne on loopback, {psutil.cpu_count()} CPUs")  # fmt: skip
    print(f"detectors: {', '.join(detectors)}")
    print(f"dataset created through the services: {dataset_s:.1f} s ({args.pairs / dataset_s:.0f} pairs/s)")
    print(f"result rows written (bulk_create, {BATCH} per batch): {insert_s:.1f} s ({rows / insert_s:.0f} rows/s)")
    print(f"stored metrics per result: {sizes['metrics_mean'] / 1000:.1f} kB on average (max "
          f"{sizes['metrics_max'] / 1000:.1f} kB), database {sizes['database'] / 2**30:.2f} GiB")  # fmt: skip
    print(f"leaderboard (engine finish_run: aggregation + consensus maps): {finished['seconds']:.1f} s, "
          f"RSS {finished['rss_before']:.0f} -> peak {finished['rss_peak']:.0f} MiB, stored leaderboard "
          f"{sizes['leaderboard'] / 1e6:.1f} MB ({finished['load'].summary()})")  # fmt: skip
    print(f"per-pair CSV of the whole run, in-process (no endpoint): {csv_s:.1f} s, {csv_bytes / 1e6:.1f} MB")
    print(timings.report())
    for note in notes:
        print(note)
    print(f"1-min load average at the end: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
