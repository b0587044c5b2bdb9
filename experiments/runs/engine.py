"""Executing a run inside Celery workers: prepare (align), one pass per detector, finish.

Work is idempotent: a detector pass skips pairs that already have a Result for (run, detector),
and results are upserted on that unique key, so a redelivered or retried task never duplicates.
A run covers its scored pairs only (`selectors.scored_pairs`: the experiment's splits).

Measuring (see `experiments.runs.measurement` for what each stored figure means): every pair that
misses the result cache is predicted alone (batch 1), warm and timed, and that call's map is its
result, so a result never depends on which pairs shared its batch; a few batches per task are
predicted once more together, untimed once then timed, for throughput. Each detector task writes
its own record (input size and its source, precision, the worker that computed, throughput) under
the run's row lock.
"""

import logging

import numpy as np
from django.db import transaction
from django.db.models import Count

from experiments import storage
from experiments.lifecycle import run_transition
from experiments.live.progress import publish_run_progress
from experiments.models import ImagePair, Result, Run, RunState
from experiments.runs import result_cache
from experiments.runs.detector_slot import DetectorSlot
from experiments.runs.environment import environment_record
from experiments.runs.pair_inputs import PairInputs, align_run_pairs, load_pair_inputs
from experiments.runs.run_records import ProgressReporter, failed_detectors, failure_summary
from experiments.runs.selectors import scored_pairs

logger = logging.getLogger(__name__)

BATCH_SIZE = 8  # pairs loaded, checked against the cache and stored together; also the throughput batch size


# Kept from the previous attempt when a failed or cancelled run is retried: they describe results it keeps.
_KEPT_ON_RETRY = ("weights", "weights_sha256", "detector_info")


class RunCancelled(Exception):
    pass


def prepare_run(run_id: int) -> bool:
    """Mark the run running, record its environment, align its pairs once. False: nothing to do."""
    run = Run.objects.select_related("experiment__dataset").get(pk=run_id)
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


def run_detector(run_id: int, name: str) -> None:
    run = Run.objects.select_related("experiment__dataset", "experiment__owner").get(pk=run_id)
    if run.state != RunState.RUNNING:
        return
    pairs = list(scored_pairs(run.experiment))
    finished = set(run.results.filter(detector=name).values_list("pair_id", flat=True))
    todo = [p for p in pairs if p.pk not in finished]
    reporter = ProgressReporter(run.pk, name, len(pairs), len(finished))
    slot = DetectorSlot(run, name, batch_size=BATCH_SIZE)
    slot.record()
    alignments = {a.pair_id: a for a in run.alignments.all()} if run.experiment.align else {}
    try:
        for start in range(0, len(todo), BATCH_SIZE):
            if Run.objects.filter(pk=run_id, cancel_requested=True).exists():
                raise RunCancelled()
            batch = todo[start : start + BATCH_SIZE]
            process_batch(run, slot, batch, alignments, final=start + BATCH_SIZE >= len(todo))
            slot.flush_measurements()
            reporter.advance(len(batch))
    except BaseException:
        try:
            slot.flush_measurements(force=True)  # what was stored was measured: keep its record
        except Exception:
            logger.warning("could not record the measurements of %s in run %s", name, run_id, exc_info=True)
        raise
    slot.flush_measurements(force=True)
    reporter.advance(0, stage="done")


def process_batch(
    run: Run, slot: DetectorSlot, pairs: list[ImagePair], alignments: dict, *, final: bool = True
) -> None:
    """Results for a batch: cache hits are linked; each miss is predicted alone and timed (its latency),
    and the misses together may be timed once more as a batch (throughput)."""
    misses = []
    for pair in pairs:
        key = slot.cache_key(pair, alignments.get(pair.pk))
        cached = result_cache.lookup(key)
        if cached and storage.exists(cached["heatmap_key"]):
            _upsert_result(run, pair, slot.name, cached, from_cache=True)
        else:
            misses.append((pair, key))
    if not misses:
        return
    slot.load()
    inputs = [load_pair_inputs(pair, alignments.get(pair.pk)) for pair, _ in misses]
    predicted = [slot.predict_timed(item) for item in inputs]
    slot.time_throughput(inputs, final=final)
    for (pair, key), item, (prob, latency_ms, memory) in zip(misses, inputs, predicted, strict=True):
        entry = build_result_entry(key, item, prob, run.experiment.threshold)
        entry.update(latency_ms=latency_ms, peak_memory_mb=memory.peak_mb, weights=slot.info["weights"])
        entry["metrics"]["memory_kind"] = memory.kind
        try:
            _upsert_result(run, pair, slot.name, entry, from_cache=False)
        except Exception:
            _discard_unreferenced(entry)
            raise
        slot.pending_pairs += 1
        result_cache.store(key, entry)


def _discard_unreferenced(entry: dict) -> None:
    """The database refused the row: remove the pictures just written, but only when nothing else can
    point at them. They are content-addressed (`results/<cache key>/...`) and so shared: another run's
    Result or a result-cache entry may use the same files. Kept when a Result references any of the
    keys, when the result cache holds an entry for the cache key, or when either check fails."""
    from django.core.cache import caches
    from django.db.models import Q

    keys = [entry[name] for name in ("heatmap_key", "mask_key", "error_map_key") if entry.get(name)]
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
    from inference.evaluation import pair_metrics
    from inference.render import error_map_png, heatmap_png, mask_png

    mask = prob >= threshold
    prefix = f"results/{key}"
    heatmap_key = storage.save_bytes(f"{prefix}/heatmap.png", heatmap_png(prob))
    mask_key = storage.save_bytes(f"{prefix}/mask.png", mask_png(mask))
    error_key = ""
    if item.label is not None:
        error_key = storage.save_bytes(f"{prefix}/error-map.png", error_map_png(mask, item.label, item.valid))
    metrics = pair_metrics(prob, mask, item.label, item.valid)
    return {"metrics": metrics, "heatmap_key": heatmap_key, "mask_key": mask_key, "error_map_key": error_key}


def _upsert_result(run: Run, pair: ImagePair, name: str, entry: dict, *, from_cache: bool) -> None:
    metrics = entry["metrics"]
    Result.objects.update_or_create(
        run=run,
        pair=pair,
        detector=name,
        defaults={
            "metrics": metrics,
            "iou": metrics.get("iou"),
            "f1": metrics.get("f1"),
            "latency_ms": entry.get("latency_ms"),
            "peak_memory_mb": entry.get("peak_memory_mb"),
            "weights": entry.get("weights", ""),
            "heatmap_key": entry["heatmap_key"],
            "mask_key": entry["mask_key"],
            "error_map_key": entry["error_map_key"],
            "from_cache": from_cache,
        },
    )


def _finish_cancelled(run: Run) -> None:
    if run.state in (RunState.QUEUED, RunState.RUNNING):
        run_transition(run.pk, RunState.CANCELLED)


def finish_run(run_id: int) -> None:
    """The leaderboard of the detectors that finished. Ends `succeeded` when every detector did,
    `partial` when some did and others failed (each failed one a row with its reason, and `error`
    listing them), `failed` when none did."""
    from experiments.runs.aggregation import build_leaderboard

    run = Run.objects.select_related("experiment").get(pk=run_id)
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
