"""Executing a run inside Celery workers: prepare (align), one pass per detector, finish.

Work is idempotent: a detector pass skips pairs that already have a Result for (run, detector),
and results are upserted on that unique key, so a redelivered or retried task never duplicates.
"""

import logging
import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction

from experiments import storage
from experiments.checkpoints import weights as checkpoints
from experiments.lifecycle import run_transition
from experiments.live.progress import publish_run_progress
from experiments.models import ImagePair, PairAlignment, Result, Run, RunState
from experiments.runs import model_cache, result_cache
from experiments.runs.environment import environment_record
from inference.catalogue import catalogue_entry

logger = logging.getLogger(__name__)

BATCH_SIZE = 8
PERSIST_EVERY_S = 1.0


class RunCancelled(Exception):
    pass


def inference_device() -> str:
    from inference.runtime import select_device

    return str(select_device(settings.INFERENCE_DEVICE))


# --------------------------------------------------------------------------- prepare
def prepare_run(run_id: int) -> bool:
    """Mark the run running, record its environment, align its pairs once. False: nothing to do."""
    run = Run.objects.select_related("experiment__dataset").get(pk=run_id)
    if run.cancel_requested:
        _finish_cancelled(run)
        return False
    if run.state == RunState.QUEUED:
        run = run_transition(run.pk, RunState.RUNNING, environment=environment_record(run, inference_device()))
    if run.state != RunState.RUNNING:
        return False
    if run.experiment.align:
        align_run_pairs(run)
    return True


def align_run_pairs(run: Run) -> None:
    from inference import align_pair
    from inference.images import encode_png
    from inference.render import mask_png

    done = set(run.alignments.values_list("pair_id", flat=True))
    todo = [p for p in run.experiment.dataset.pairs.all() if p.pk not in done]
    for index, pair in enumerate(todo, start=1):
        a, b = load_pair_images(pair)
        alignment = align_pair(a, b)
        warped_key = storage.run_key(run.pk, "aligned", f"{pair.pk}-a.png")
        valid_key = storage.run_key(run.pk, "aligned", f"{pair.pk}-valid.png")
        storage.save_bytes(warped_key, encode_png(alignment.warped_a))
        storage.save_bytes(valid_key, mask_png(alignment.valid_mask))
        summary = alignment.as_dict()
        PairAlignment.objects.update_or_create(
            run=run,
            pair=pair,
            defaults={
                "method": summary["method"],
                "ok": summary["ok"],
                "homography": summary["homography"],
                "matches": summary["matches"],
                "inliers": summary["inliers"],
                "inlier_ratio": summary["inlier_ratio"],
                "reprojection_error": summary["reprojection_error"],
                "warped_a_key": warped_key,
                "valid_mask_key": valid_key,
            },
        )
        publish_run_progress(
            run.pk, {"stage": "aligning", "aligned": index + len(done), "pairs": len(todo) + len(done)}
        )


# --------------------------------------------------------------------------- inputs
@dataclass
class PairInputs:
    pair: ImagePair
    a: np.ndarray
    b: np.ndarray
    label: np.ndarray | None
    valid: np.ndarray | None


def load_pair_images(pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
    from inference import load_image

    limit = settings.MAX_IMAGE_PIXELS
    return (
        load_image(storage.read_bytes(pair.image_a), max_pixels=limit),
        load_image(storage.read_bytes(pair.image_b), max_pixels=limit),
    )


def load_pair_inputs(pair: ImagePair, alignment: PairAlignment | None) -> PairInputs:
    from inference import load_image
    from inference.images import load_mask

    a, b = load_pair_images(pair)
    valid = None
    if alignment is not None:
        a = load_image(storage.read_bytes(alignment.warped_a_key))
        valid, _ = load_mask(storage.read_bytes(alignment.valid_mask_key))
    label = load_mask(storage.read_bytes(pair.label))[0] if pair.label else None
    return PairInputs(pair, a, b, label, valid)


# --------------------------------------------------------------------------- one detector
class ProgressReporter:
    """Counts one detector's pairs; persists at most once a second and publishes every batch."""

    def __init__(self, run_id: int, detector: str, total: int, done: int):
        self.run_id, self.detector, self.total, self.done = run_id, detector, total, done
        self.started = time.monotonic()
        self.started_done = done
        self.last_persist = 0.0

    def advance(self, count: int, stage: str = "detecting") -> None:
        self.done += count
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.started_done) / elapsed if elapsed > 0 else 0.0
        state = {
            "done": self.done,
            "total": self.total,
            "stage": stage,
            "pairs_per_s": round(rate, 3),
            "eta_s": round((self.total - self.done) / rate, 1) if rate > 0 else None,
        }
        force = self.done >= self.total
        if force or time.monotonic() - self.last_persist >= PERSIST_EVERY_S:
            overall = _persist_detector_progress(self.run_id, self.detector, state)
            self.last_persist = time.monotonic()
        else:
            overall = None
        publish_run_progress(
            self.run_id, {"detector": self.detector, **state, **({"overall": overall} if overall else {})}
        )


def _persist_detector_progress(run_id: int, detector: str, state: dict) -> dict:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        detectors = run.progress.setdefault("detectors", {})
        detectors[detector] = state
        run.progress["stage"] = state["stage"]
        run.progress_done = sum(d["done"] for d in detectors.values())
        run.save(update_fields=["progress", "progress_done"])
    return {"done": run.progress_done, "total": run.progress_total}


def _record_weights(run_id: int, detector: str, info: dict) -> None:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        run.environment.setdefault("weights", {})[detector] = info["weights"]
        run.environment.setdefault("weights_sha256", {})[detector] = info.get("weights_sha256")
        run.environment.setdefault("detector_info", {})[detector] = info
        run.save(update_fields=["environment"])


_flop_counts: dict[tuple[str, int], int | None] = {}


def _flops(detector, input_size: int) -> int | None:
    """FLOPs of one forward at the run's input size (learned detectors only; counted once per process)."""
    if getattr(detector, "model", None) is None:
        return None
    key = (detector.info.name, input_size)
    if key not in _flop_counts:
        from inference.profiling import count_flops

        try:
            _flop_counts[key] = count_flops(detector.model, input_size)
        except Exception:
            logger.warning("could not count FLOPs of %s", detector.info.name, exc_info=True)
            _flop_counts[key] = None
    return _flop_counts[key]


class DetectorSlot:
    """One detector of a run, loaded only when a pair misses the result cache.

    The cache key needs the weights' identity; for classical, seeded-random and checkpoint weights
    it is known without loading the model, so a fully cached pass never loads it at all."""

    def __init__(self, run: Run, name: str):
        experiment = run.experiment
        self.run, self.name = run, name
        self.entry = catalogue_entry(name)
        self.choice = checkpoints.weights_for(
            experiment.owner, name, experiment.detector_weights.get(name, "auto"), learned=self.entry.learned
        )
        self.weights_ref = self._expected_weights_ref()
        self.info = result_cache.lookup_info(self._info_key()) if self.weights_ref else None
        self.detector = None

    def _expected_weights_ref(self) -> str | None:
        ref = self.choice.ref
        if ref == "none":
            return "none:None"
        if ref == "random":
            return f"random:seed={self.run.experiment.seed}"
        if ref.startswith("checkpoint:"):
            return f"{ref}:{ref.split(':', 1)[1]}"
        return None  # "auto": ImageNet weights or none at all; only loading tells

    def _info_key(self) -> str:
        return f"{self.name}|{self.weights_ref}|{self.run.experiment.input_size}|{inference_device()}"

    def load(self):
        if self.detector is not None:
            return self.detector
        experiment = self.run.experiment
        detector = model_cache.get_detector(
            self.name, self.choice.weights, self.choice.ref, inference_device(), experiment.input_size, experiment.seed
        )
        info = detector.info.as_dict()
        if info["weights"] == "random":
            info["weights_sha256"] = f"seed={experiment.seed}"  # seeded init: the seed identifies the weights
        info["flops"] = _flops(detector, experiment.input_size)
        self.weights_ref = f"{info['weights']}:{info.get('weights_sha256')}"
        self.info = info
        result_cache.store_info(self._info_key(), info)
        if not getattr(detector, "_diffplatform_warm", False):
            warm_up(detector)
        self.detector = detector
        return detector

    def cache_key(self, pair: ImagePair) -> str:
        if self.weights_ref is None:
            self.load()
        experiment = self.run.experiment
        return result_cache.result_cache_key(
            owner_id=experiment.owner_id, pair=pair, detector=self.name, weights_ref=self.weights_ref,
            settings_record=experiment.settings_record(),
        )  # fmt: skip

    def record(self) -> None:
        if self.info is None:
            self.load()
        _record_weights(self.run.pk, self.name, self.info)


def warm_up(detector) -> None:
    """One untimed call on a small pair, so lazy initialisation is not counted as latency."""
    blank = np.zeros((64, 64, 3), np.uint8)
    detector.predict(blank, blank)
    detector._diffplatform_warm = True


def run_detector(run_id: int, name: str) -> None:
    run = Run.objects.select_related("experiment__dataset", "experiment__owner").get(pk=run_id)
    if run.state != RunState.RUNNING:
        return
    pairs = list(run.experiment.dataset.pairs.all())
    finished = set(run.results.filter(detector=name).values_list("pair_id", flat=True))
    todo = [p for p in pairs if p.pk not in finished]
    reporter = ProgressReporter(run.pk, name, len(pairs), len(finished))
    slot = DetectorSlot(run, name)
    slot.record()
    alignments = {a.pair_id: a for a in run.alignments.all()} if run.experiment.align else {}
    for start in range(0, len(todo), BATCH_SIZE):
        if Run.objects.filter(pk=run_id, cancel_requested=True).exists():
            raise RunCancelled()
        batch = todo[start : start + BATCH_SIZE]
        process_batch(run, slot, batch, alignments)
        reporter.advance(len(batch))
    reporter.advance(0, stage="done")


def process_batch(run: Run, slot: DetectorSlot, pairs: list[ImagePair], alignments: dict) -> None:
    """Results for a batch: cache hits are linked, misses go through the model in one call."""
    from inference.memory import measure_peak_memory

    misses = []
    for pair in pairs:
        key = slot.cache_key(pair)
        cached = result_cache.lookup(key)
        if cached and storage.exists(cached["heatmap_key"]):
            _upsert_result(run, pair, slot.name, cached, from_cache=True)
        else:
            misses.append((pair, key))
    if not misses:
        return
    detector = slot.load()
    inputs = [load_pair_inputs(pair, alignments.get(pair.pk)) for pair, _ in misses]
    started = time.perf_counter()
    with measure_peak_memory(slot.info.get("device", "cpu")) as memory:
        probs = detector.predict_batch([(item.a, item.b) for item in inputs])
    latency_ms = (time.perf_counter() - started) * 1000 / len(misses)
    for (pair, key), item, prob in zip(misses, inputs, probs, strict=True):
        entry = build_result_entry(key, item, prob, run.experiment.threshold)
        entry.update(latency_ms=latency_ms, peak_memory_mb=memory.peak_mb, weights=slot.info["weights"])
        entry["metrics"]["memory_kind"] = memory.kind
        try:
            _upsert_result(run, pair, slot.name, entry, from_cache=False)
        except Exception:
            _discard_unreferenced(entry)
            raise
        result_cache.store(key, entry)


def _discard_unreferenced(entry: dict) -> None:
    """The database refused the row: remove the pictures just written unless a stored result uses them."""
    keys = [entry[name] for name in ("heatmap_key", "mask_key", "error_map_key") if entry.get(name)]
    try:
        if Result.objects.filter(heatmap_key=entry["heatmap_key"]).exists():
            return
    except Exception:
        logger.warning("could not check references of %s", entry["heatmap_key"], exc_info=True)
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


# --------------------------------------------------------------------------- finish
def _finish_cancelled(run: Run) -> None:
    if run.state in (RunState.QUEUED, RunState.RUNNING):
        run_transition(run.pk, RunState.CANCELLED)


def finish_run(run_id: int) -> None:
    from experiments.runs.aggregation import build_leaderboard

    run = Run.objects.select_related("experiment").get(pk=run_id)
    if run.cancel_requested:
        _finish_cancelled(run)
        return
    if run.state != RunState.RUNNING:
        return
    expected = run.progress_total
    stored = run.results.count()
    if stored != expected:
        run_transition(run.pk, RunState.FAILED, error=f"Only {stored} of {expected} results were produced.")
        return
    run_transition(run.pk, RunState.SUCCEEDED, leaderboard=build_leaderboard(run), progress_done=stored)


def fail_run(run_id: int, message: str) -> None:
    run = Run.objects.get(pk=run_id)
    if run.cancel_requested:
        _finish_cancelled(run)
    elif run.state in (RunState.QUEUED, RunState.RUNNING):
        run_transition(run.pk, RunState.FAILED, error=message[:5000])
