"""Executing a run inside Celery workers: prepare (align), one pass per detector, finish.

Work is idempotent: a detector pass skips pairs that already have a Result for (run, detector),
and results are upserted on that unique key, so a redelivered or retried task never duplicates.
A run covers its scored pairs only (`selectors.scored_pairs`: the experiment's splits).

Measuring (see `experiments.runs.measurement` for what each stored figure means): the pairs that
miss the result cache are predicted in batches of `BATCH_SIZE` (one `predict_batch` call: the
maps, and a throughput sample once the batch shape is warm), except up to `LATENCY_SAMPLES`
pairs per detector task, spread evenly over its pairs, each predicted alone (batch 1), warm and
timed: their map is their result and their milliseconds their latency. Pictures and metrics of a
batch are written together (one bulk upsert of its `Result` rows). Each detector task writes its
own record (input size and its source, precision, the worker that computed, throughput) under the
run's row lock.
"""

import functools
import logging
import math

import numpy as np
from django.db import transaction
from django.db.models import Count

from experiments import storage
from experiments.lifecycle import run_transition
from experiments.live.progress import publish_run_progress
from experiments.models import ImagePair, Result, Run, RunState
from experiments.plans.kinds import run_plan
from experiments.runs import measurement, result_cache, result_pictures
from experiments.runs.detector_slot import DetectorSlot
from experiments.runs.environment import environment_record
from experiments.runs.pair_inputs import PairInputs, align_run_pairs, load_pair_inputs
from experiments.runs.run_records import ProgressReporter, failed_detectors, failure_summary
from experiments.runs.selectors import scored_pairs
from experiments.runs.threshold_rules import detector_threshold

logger = logging.getLogger(__name__)

BATCH_SIZE = 8  # pairs loaded, checked against the cache, predicted and stored together; the throughput batch size
LATENCY_SAMPLES = measurement.LATENCY_SAMPLES  # pairs per detector task predicted alone for their latency
CACHED_CHUNK = 256  # results served from the result cache, looked up and stored together


# Kept from the previous attempt when a failed or cancelled run is retried: they describe results it keeps.
_KEPT_ON_RETRY = ("weights", "weights_sha256", "detector_info")


class RunCancelled(Exception):
    pass


def is_stale(run: Run, attempt: str | None) -> bool:
    """A task queued for an earlier start of this run (before a retry): it must not touch the run now.
    Tasks without an attempt (called in process, or queued before attempts existed) are current."""
    if attempt is not None and (run.progress or {}).get("attempt") != attempt:
        logger.info("run %s: a task of an earlier attempt is skipped", run.pk)
        return True
    return False


def prepare_run(run_id: int, attempt: str | None = None) -> bool:
    """Mark the run running, record its environment, align its pairs once. False: nothing to do."""
    run = Run.objects.select_related("experiment__dataset").get(pk=run_id)
    if is_stale(run, attempt):
        return False
    if run.cancel_requested:
        _finish_cancelled(run)
        return False
    if run.state == RunState.QUEUED:
        run = run_transition(run.pk, RunState.RUNNING, environment=_prepared_environment(run))
    if run.state != RunState.RUNNING:
        return False
    if run.experiment.align:
        align_run_pairs(run)
    return True


def _prepared_environment(run: Run) -> dict:
    record = environment_record(run)
    if run.results.exists():  # a retry: the per-detector records describe the results kept
        record.update({key: run.environment[key] for key in _KEPT_ON_RETRY if key in run.environment})
    return record


def run_detector(run_id: int, name: str, attempt: str | None = None) -> None:
    from inference.runtime import single_threaded_blas

    single_threaded_blas()  # the metrics' BLAS calls must not leave threads spinning beside the network
    run = Run.objects.select_related("experiment__dataset", "experiment__owner").get(pk=run_id)
    if run.state != RunState.RUNNING or is_stale(run, attempt):
        return
    pairs = list(scored_pairs(run.experiment))
    finished = set(run.results.filter(detector=name).values_list("pair_id", flat=True))
    todo = [p for p in pairs if p.pk not in finished]
    reporter = ProgressReporter(run.pk, name, len(pairs), len(finished))
    plan = run_plan(run, name)  # the name resolved once, here: what it is, loads, runs at and on
    slot = DetectorSlot(run, plan, batch_size=BATCH_SIZE)
    slot.record()
    slot.measure_model_memory(pairs[0] if pairs else None)  # once per weights, size and device (cached)
    alignments = {a.pair_id: a for a in run.alignments.all()} if run.experiment.align else {}
    stop_if_cancelled = functools.partial(_stop_if_cancelled, run_id)
    slot.threshold = detector_threshold(run, slot, alignments, between_batches=stop_if_cancelled)  # in cache keys
    todo = link_cached_results(run, slot, todo, alignments, reporter)
    sampled = latency_sample(todo)
    # On a GPU the next batch is predicted while the CPUs make this one's results; on the CPU that work
    # would only take the cores from the network (measured: no gain), so it runs between batches.
    pipeline = ResultPipeline(overlap=slot.meter_device.startswith("cuda"))
    try:
        for start in range(0, len(todo), BATCH_SIZE):
            stop_if_cancelled()
            batch = todo[start : start + BATCH_SIZE]
            stored = functools.partial(_batch_stored, slot, reporter, len(batch))
            process_batch(run, slot, batch, alignments, final=start + BATCH_SIZE >= len(todo), sampled=sampled,
                          pipeline=pipeline, done=stored)  # fmt: skip
        pipeline.drain()
    except BaseException:
        try:
            pipeline.drain()  # the batch predicted before the failure is stored
        except Exception:
            logger.warning("could not store a batch of %s in run %s", name, run_id, exc_info=True)
        try:
            slot.flush_measurements(force=True)  # what was stored was measured: keep its record
        except Exception:
            logger.warning("could not record the measurements of %s in run %s", name, run_id, exc_info=True)
        raise
    finally:
        pipeline.close()
    slot.flush_measurements(force=True)
    reporter.advance(0, stage="done")


def _stop_if_cancelled(run_id: int) -> None:
    if Run.objects.filter(pk=run_id, cancel_requested=True).exists():
        raise RunCancelled()


def link_cached_results(
    run: Run, slot: DetectorSlot, pairs: list[ImagePair], alignments: dict, reporter: ProgressReporter
) -> list[ImagePair]:
    """Store the results the result cache already holds for `pairs` (looked up and written
    `CACHED_CHUNK` at a time: one Redis round trip and one upsert per chunk); returns the pairs
    left to compute, in their order."""
    misses = []
    for start in range(0, len(pairs), CACHED_CHUNK):
        if Run.objects.filter(pk=run.pk, cancel_requested=True).exists():
            raise RunCancelled()
        chunk = pairs[start : start + CACHED_CHUNK]
        keys = [slot.cache_key(pair, alignments.get(pair.pk)) for pair in chunk]
        entries = result_cache.lookup_many(keys)
        rows = []
        for pair, key in zip(chunk, keys, strict=True):
            cached = entries.get(key)
            if cached and result_pictures.stored(cached):
                rows.append((pair, cached, True))
            else:
                misses.append(pair)
        if rows:
            _store_rows(run, slot, rows, [])
            reporter.advance(len(rows))
    return misses


def _batch_stored(slot: DetectorSlot, reporter: ProgressReporter, count: int) -> None:
    slot.flush_measurements()
    reporter.advance(count)


class ResultPipeline:
    """A batch's pictures and metrics, made on the CPUs, one result per thread (`in_parallel`:
    NumPy, OpenCV and zlib release the GIL for most of that work). With `overlap` they are made while
    the task's thread predicts the next batch (a GPU computes meanwhile); the rows (database, result
    cache) are written by the task's thread, in batch order, before the next batch is handed over.
    At most one batch waits, so memory stays flat however many pairs a task has."""

    def __init__(self, overlap: bool = True):
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="run-results") if overlap else None
        self._waiting = None

    def submit(self, build, store) -> None:
        self.drain()
        if self._pool is None:
            store(build())
        else:
            self._waiting = (self._pool.submit(build), store)

    def drain(self) -> None:
        """Store the batch waiting (nothing is made meanwhile: called before a prediction is timed)."""
        if self._waiting is None:
            return
        future, store = self._waiting
        self._waiting = None
        store(future.result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


@functools.cache
def _threads(pid: int):
    """This process's threads for a batch's CPU work (created after a fork, never inherited)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=min(BATCH_SIZE, os.cpu_count() or 1), thread_name_prefix="batch")


def in_parallel(function, items: list) -> list:
    """`function` of each item on this process's threads (decoding, metrics, PNG encoding and file
    writes release the GIL for most of their time), in order: each answer, or the exception it raised."""
    import os

    futures = [_threads(os.getpid()).submit(function, item) for item in items]
    answers = []
    for future in futures:
        try:
            answers.append(future.result())
        except Exception as error:  # noqa: BLE001 - handed to the caller, which decides
            answers.append(error)
    return answers


def latency_sample(pairs: list[ImagePair], samples: int | None = None) -> set[int]:
    """Ids of the pairs (at most `samples`, evenly spread over `pairs`) predicted alone for their latency."""
    samples = LATENCY_SAMPLES if samples is None else samples
    if not pairs or samples <= 0:
        return set()
    stride = max(1, math.ceil(len(pairs) / samples))
    return {pair.pk for pair in pairs[::stride]}


def process_batch(
    run: Run,
    slot: DetectorSlot,
    pairs: list[ImagePair],
    alignments: dict,
    *,
    final: bool = True,
    sampled: set[int] | None = None,
    pipeline: "ResultPipeline | None" = None,
    done=None,
) -> None:
    """Results for a batch of pairs the result cache does not hold (`link_cached_results` took the
    others): predicted together (sampled ones alone, timed: their latency), and every row of the
    batch written in one bulk upsert. A `pipeline` decides when the pictures and metrics are made (at
    once, or beside the next batch's prediction on a GPU); `done()` runs once the rows are written."""
    misses = [(pair, slot.cache_key(pair, alignments.get(pair.pk))) for pair in pairs]
    predicted = []
    if misses:
        slot.load()
        inputs = in_parallel(lambda miss: load_pair_inputs(miss[0], alignments.get(miss[0].pk)), misses)
        if failed := next((item for item in inputs if isinstance(item, Exception)), None):
            raise failed
        alone = {index for index, (pair, _) in enumerate(misses) if sampled and pair.pk in sampled}
        if pipeline is not None and (alone or slot.timing_throughput):
            pipeline.drain()  # nothing else runs while a prediction is timed
        predicted = list(zip(misses, inputs, slot.predict_pairs(inputs, alone=alone, final=final), strict=True))
    threshold, weights = slot.threshold, slot.info["weights"] if predicted else ""

    def entry_of(computed) -> dict:
        (_, key), item, (prob, latency_ms, memory) = computed
        entry = build_result_entry(key, item, prob, threshold)
        entry.update(latency_ms=latency_ms, peak_memory_mb=memory.peak_mb if memory else None, weights=weights)
        entry["metrics"]["memory_kind"] = memory.kind if memory else None
        return entry

    def build() -> tuple[list[tuple[ImagePair, str, dict]], Exception | None]:
        """Pictures and metrics of the computed pairs, one per thread (no database access); on a
        failure, what was made besides comes back with the error."""
        made, error = [], None
        for ((pair, key), _, _), entry in zip(predicted, in_parallel(entry_of, predicted), strict=True):
            if isinstance(entry, Exception):
                error = error or entry  # raised again by store(), on the task's thread
            else:
                made.append((pair, key, entry))
        return made, error

    def store(built) -> None:
        computed, error = built
        if error is not None:
            for _, _, entry in computed:  # no row will point at them
                _discard_unreferenced(entry)
            raise error
        _store_rows(run, slot, [(pair, entry, False) for pair, _, entry in computed], computed)
        if done is not None:
            done()

    if pipeline is None:
        store(build())
    else:
        pipeline.submit(build, store)


def _store_rows(run: Run, slot: DetectorSlot, rows: list, computed: list) -> None:
    if not rows:
        return
    try:
        _upsert_results(run, slot.name, rows)
    except Exception:
        for _, _, entry in computed:
            _discard_unreferenced(entry)
        raise
    slot.pending_pairs += len(computed)
    result_cache.store_many({key: entry for _, key, entry in computed})


def _discard_unreferenced(entry: dict) -> None:
    """The database refused the row: remove the pictures just written, but only when nothing else can
    point at them. They are content-addressed (`results/<cache key>/...`) and so shared: another run's
    Result or a result-cache entry may use the same files. Kept when a Result references any of the
    keys, when the result cache holds an entry for the cache key, or when either check fails."""
    from django.core.cache import caches
    from django.db.models import Q

    keys = result_pictures.files(entry)
    if not keys:
        return
    parts = keys[0].split("/")
    cache_key = parts[1] if len(parts) > 2 and parts[0] == "results" else None
    try:
        if Result.objects.filter(Q(heatmap_key__in=keys) | Q(mask_key__in=keys) | Q(error_map_key__in=keys)).exists():
            return
        if cache_key is None or result_cache.lookup(cache_key) is not None:
            return
        # The cache fails open (a miss while Redis is down): only a miss from a Redis that answers is one.
        backend = caches["default"]
        if hasattr(backend, "_cache"):
            backend._cache.get_client(None).ping()
    except Exception:
        logger.warning("could not check references of %s; the files are kept", keys[0], exc_info=True)
        return
    storage.delete_keys(keys)


def build_result_entry(key: str, item: PairInputs, prob: np.ndarray, threshold: float) -> dict:
    """A computed result's metrics and stored map (`result_pictures`: its heatmap and error map are
    drawn when first read)."""
    from inference.evaluation import pair_metrics

    mask = prob >= threshold
    return {"metrics": pair_metrics(prob, mask, item.label, item.valid),
            **result_pictures.write(key, prob, mask, labelled=item.label is not None)}  # fmt: skip


_RESULT_FIELDS = ("metrics", "iou", "f1", "latency_ms", "peak_memory_mb", "weights", "heatmap_key", "mask_key",
                  "error_map_key", "from_cache")  # fmt: skip


def _upsert_results(run: Run, name: str, rows: list[tuple[ImagePair, dict, bool]]) -> None:
    """One `INSERT ... ON CONFLICT (run, pair, detector) DO UPDATE` for a batch's rows: a redelivered
    task overwrites its own rows and never duplicates them."""
    objects = []
    for pair, entry, from_cache in rows:
        metrics = entry["metrics"]
        objects.append(Result(
            run=run, pair=pair, detector=name, metrics=metrics, iou=metrics.get("iou"), f1=metrics.get("f1"),
            latency_ms=entry.get("latency_ms"), peak_memory_mb=entry.get("peak_memory_mb"),
            weights=entry.get("weights", ""), heatmap_key=entry["heatmap_key"], mask_key=entry["mask_key"],
            error_map_key=entry["error_map_key"], from_cache=from_cache,
        ))  # fmt: skip
    Result.objects.bulk_create(
        objects, update_conflicts=True, unique_fields=("run", "pair", "detector"), update_fields=_RESULT_FIELDS
    )


def _finish_cancelled(run: Run) -> None:
    if run.state in (RunState.QUEUED, RunState.RUNNING):
        run_transition(run.pk, RunState.CANCELLED)


def finish_run(run_id: int, attempt: str | None = None) -> None:
    """The leaderboard of the detectors that finished. Ends `succeeded` when every detector did,
    `partial` when some did and others failed (each failed one a row with its reason, and `error`
    listing them), `failed` when none did."""
    from experiments.reporting.aggregation import build_leaderboard

    run = Run.objects.select_related("experiment").get(pk=run_id)
    if is_stale(run, attempt):
        return
    if run.cancel_requested:
        _finish_cancelled(run)
        return
    if run.state != RunState.RUNNING:
        return
    detectors = run.experiment.detectors
    failed = failed_detectors(run)
    expected = run.progress_total // max(len(detectors), 1)  # pairs per detector
    stored = dict(run.results.filter(detector__in=detectors).values_list("detector").annotate(n=Count("pk")).order_by())
    for name in detectors:
        if name not in failed and stored.get(name, 0) != expected:
            failed[name] = f"Only {stored.get(name, 0)} of {expected} results were produced."
    finished = [name for name in detectors if name not in failed]
    done = sum(stored.get(name, 0) for name in detectors)
    if not finished:
        run_transition(run.pk, RunState.FAILED, error=failure_summary(failed)[:5000], progress_done=done)
        return
    leaderboard = build_leaderboard(run, failed=failed)
    if failed:
        run_transition(
            run.pk, RunState.PARTIAL, leaderboard=leaderboard, error=failure_summary(failed)[:5000], progress_done=done
        )
        return
    run_transition(run.pk, RunState.SUCCEEDED, leaderboard=leaderboard, progress_done=done)


def fail_detector(run_id: int, detector: str, message: str) -> None:
    """One detector's task failed (not transiently): record it with its reason, under the run's row
    lock, and let the other detectors go on; `finish_run` ends the run `partial` (or `failed` when no
    detector finished). A cancel request still cancels the whole run; when every detector of the run
    has failed, the run fails at once."""
    run = Run.objects.select_related("experiment").get(pk=run_id)
    if run.cancel_requested:
        _finish_cancelled(run)
        return
    if run.state not in (RunState.QUEUED, RunState.RUNNING):
        return
    with transaction.atomic():
        run = Run.objects.select_for_update().select_related("experiment").get(pk=run_id)
        detectors = run.progress.setdefault("detectors", {})
        entry = detectors.get(detector) if isinstance(detectors.get(detector), dict) else {}
        detectors[detector] = {
            **entry,
            "done": entry.get("done", 0),
            "total": entry.get("total", run.progress_total // max(len(run.experiment.detectors), 1)),
            "stage": "failed",
            "failed": message[:2000],
            "eta_s": None,
        }
        run.save(update_fields=["progress"])
        failed = failed_detectors(run)
    publish_run_progress(run_id, {"detector": detector, **detectors[detector]})
    if set(failed) >= set(run.experiment.detectors):
        run_transition(run_id, RunState.FAILED, error=failure_summary(failed)[:5000])


def fail_run(run_id: int, message: str) -> None:
    """The whole run fails (preparing or finishing it failed), or is cancelled when that was asked."""
    run = Run.objects.get(pk=run_id)
    if run.cancel_requested:
        _finish_cancelled(run)
    elif run.state in (RunState.QUEUED, RunState.RUNNING):
        run_transition(run.pk, RunState.FAILED, error=message[:5000])
