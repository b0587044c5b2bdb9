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
import time
from dataclasses import dataclass

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count

from experiments import storage
from experiments.checkpoints import weights as checkpoints
from experiments.lifecycle import run_transition
from experiments.live.progress import publish_run_progress
from experiments.models import ImagePair, PairAlignment, Result, Run, RunState
from experiments.runs import measurement, model_cache, result_cache
from experiments.runs.environment import code_version, environment_record, key_library_versions, worker_record
from experiments.runs.selectors import scored_pairs
from inference.catalogue import catalogue_entry

logger = logging.getLogger(__name__)

BATCH_SIZE = 8  # pairs loaded, checked against the cache and stored together; also the throughput batch size
THROUGHPUT_BATCHES = 2  # batched calls timed per detector task (after one untimed batched warm-up)
PERSIST_EVERY_S = 1.0
# Kept from the previous attempt when a failed or cancelled run is retried: they describe results it keeps.
_KEPT_ON_RETRY = ("weights", "weights_sha256", "detector_info")


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


def align_run_pairs(run: Run) -> None:
    from inference import align_pair
    from inference.images import encode_png
    from inference.render import mask_png

    done = set(run.alignments.values_list("pair_id", flat=True))
    todo = [p for p in scored_pairs(run.experiment) if p.pk not in done]
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


def _update_detector_record(run_id: int, detector: str, update) -> None:
    """Change one detector's record in `Run.environment["detector_info"]` under the run's row lock,
    so detector tasks running at the same time never overwrite each other's records."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        update(run.environment, run.environment.setdefault("detector_info", {}).setdefault(detector, {}))
        run.save(update_fields=["environment"])


def _record_detector(run_id: int, detector: str, info: dict) -> None:
    def update(environment: dict, record: dict) -> None:
        environment.setdefault("weights", {})[detector] = info["weights"]
        environment.setdefault("weights_sha256", {})[detector] = info.get("weights_sha256")
        record.update(info)

    _update_detector_record(run_id, detector, update)


_flop_counts: dict[tuple[str, int | None], int | None] = {}


def _flops(detector, input_size: int | None) -> int | None:
    """FLOPs of one forward at the detector's input size (learned detectors only; counted once per process)."""
    if getattr(detector, "model", None) is None or input_size is None:
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


# --------------------------------------------------------------------------- input size
_checkpoint_meta: dict[str, dict] = {}


def _checkpoint_file(entry, choice) -> tuple[str, object] | None:
    """`(sha256, path)` of the checkpoint a detector will load, when it loads one."""
    if choice.ref.startswith("checkpoint:"):
        return choice.ref.split(":", 1)[1], choice.weights
    if choice.ref != "auto":
        return None
    from inference.weights import WeightsError, checkpoint_source, get_checkpoint_resolver

    resolver = get_checkpoint_resolver()  # without one, "auto" means ImageNet or nothing: no meta
    path = resolver(entry.name) if resolver is not None else None
    if path is None:
        return None
    try:
        source = checkpoint_source(path)
    except WeightsError:
        return None
    return source.sha256, source.path


def _checkpoint_input_size(entry, choice) -> int | None:
    found = _checkpoint_file(entry, choice)
    if found is None:
        return None
    sha256, path = found
    if sha256 not in _checkpoint_meta:
        from inference.weights import load_checkpoint

        _checkpoint_meta[sha256] = load_checkpoint(path)[1]
    size = _checkpoint_meta[sha256].get("input_size")
    return int(size) if isinstance(size, int | float) and not isinstance(size, bool) and size >= 1 else None


def resolve_input_size(entry, choice, override: int | None) -> tuple[int | None, str | None]:
    """The size a learned detector runs at and where it comes from: the experiment's override, the
    checkpoint's `meta["input_size"]`, the registry's default (`catalogue_entry(name).input_size`),
    or the library's default for a plug-in that declares none. Classical detectors: `(None, None)`."""
    if not entry.learned:
        return None, None
    if override:
        return int(override), "override"
    from_checkpoint = _checkpoint_input_size(entry, choice)
    if from_checkpoint:
        return from_checkpoint, "checkpoint"
    if entry.input_size:
        return int(entry.input_size), "registry"
    from inference.detectors.base import DEFAULT_INPUT_SIZE

    return DEFAULT_INPUT_SIZE, "default"


def weights_and_input_size(experiment, name: str, choice: str):
    """`(WeightsChoice, input size, its source)` of detector `name` under weights `choice` in
    `experiment`: the one rule for a detector alone and for an ensemble's member."""
    entry = catalogue_entry(name)
    weights = checkpoints.weights_for(experiment.owner, name, choice, learned=entry.learned)
    return (weights, *resolve_input_size(entry, weights, experiment.input_size))


@dataclass(frozen=True)
class EnsembleMember:
    """One member of a run's ensemble, resolved as that detector would be alone in the same run."""

    name: str
    learned: bool
    choice: checkpoints.WeightsChoice
    input_size: int | None
    input_size_source: str | None

    def build_options(self) -> dict:
        """The member as `inference.detectors.ensemble.build_ensemble` takes it."""
        return {"name": self.name, "weights": self.choice.weights, "input_size": self.input_size}


def ensemble_member_plan(experiment) -> list[EnsembleMember]:
    """The members of `experiment`'s ensemble (`experiments.checkpoints.weights.ensemble_members`)
    with their weights and input sizes. A learned member whose checkpoint is gone by now is left
    out rather than run with ImageNet or random weights."""
    plan = []
    for name, choice in checkpoints.ensemble_members(experiment):
        weights, size, source = weights_and_input_size(experiment, name, choice)
        learned = catalogue_entry(name).learned
        if learned and not weights.ref.startswith("checkpoint:"):
            continue
        plan.append(EnsembleMember(name, learned, weights, size, source))
    return plan


# --------------------------------------------------------------------------- device and precision
def expected_precision(learned: bool, device: str) -> str:
    """What a detector built with default runtime options computes in: mixed precision (bf16 where
    the GPU supports it, else fp16) for learned detectors on CUDA, fp32 otherwise."""
    if not learned or not str(device).startswith("cuda"):
        return "fp32"
    import torch

    from inference.runtime import RuntimeOptions, autocast_dtype

    chosen = torch.device(device)
    if not RuntimeOptions().amp_enabled(chosen):
        return "fp32"
    return "bf16" if autocast_dtype(chosen) == torch.bfloat16 else "fp16"


def precision_of(detector) -> str:
    """The precision a loaded detector actually computes in (an ensemble: its members', joined by "+")."""
    members = getattr(detector, "members", None)
    if members:
        return "+".join(sorted({precision_of(member) for member in members}))
    options, device = getattr(detector, "options", None), getattr(detector, "device", None)
    if options is None or device is None or not hasattr(options, "amp_enabled"):
        return "fp32"
    import torch

    from inference.runtime import autocast_dtype

    if not options.amp_enabled(device):
        return "fp32"
    return "bf16" if autocast_dtype(device) == torch.bfloat16 else "fp16"


def _device_record(device: str) -> dict:
    """The device part of the result-cache key: the CPU, or the GPU with CUDA and cuDNN versions."""
    if not (device.startswith("cuda") or device == "mixed"):
        return {"type": "cpu"}
    import torch

    if not torch.cuda.is_available():
        return {"type": device}
    return {
        "type": "cuda" if device.startswith("cuda") else device,
        "gpu": torch.cuda.get_device_name(torch.device(device) if device.startswith("cuda") else None),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
    }


def _alignment_record(align: bool, alignment: PairAlignment | None) -> dict:
    """The warp applied to A before detection (its method and homography), as the cache key sees it."""
    if not align:
        return {"align": False}
    if alignment is None:
        return {"align": True, "method": None}
    return {"align": True, "method": alignment.method, "ok": alignment.ok, "homography": alignment.homography}


def _runtime_options(learned: bool) -> dict:
    if not learned:
        return {}
    from dataclasses import asdict

    from inference.runtime import RuntimeOptions

    return asdict(RuntimeOptions())


class DetectorSlot:
    """One detector of a run, loaded only when a pair misses the result cache.

    The cache key needs the weights' identity; for classical, seeded-random and checkpoint weights
    it is known without loading the model, so a fully cached pass never loads it at all. An
    ensemble is always built first: its members (and their weights) are part of its identity.
    Its members are resolved as each would be alone in the run (`ensemble_member_plan`).

    The slot also measures: each computed pair alone (batch 1), a few batched calls (throughput),
    and the memory of both; `flush_measurements` adds them to the run's record of this detector."""

    def __init__(self, run: Run, name: str):
        experiment = run.experiment
        self.run, self.name = run, name
        self.entry = catalogue_entry(name)
        self.choice, self.input_size, self.input_size_source = weights_and_input_size(
            experiment, name, experiment.detector_weights.get(name, "auto")
        )
        self.is_ensemble = self.entry.family == "ensemble"
        # An ensemble's members, each with the weights and input size it has alone in this run.
        self.member_plan = ensemble_member_plan(experiment) if self.is_ensemble else []
        self.learned = self.entry.learned or any(member.learned for member in self.member_plan)
        # Classical detectors compute with NumPy/OpenCV on the CPU whatever the worker has.
        self.device = inference_device() if self.entry.learned or self.is_ensemble else "cpu"
        self.precision = expected_precision(self.entry.learned, self.device)
        self.key_precision = self.precision  # fixed before loading, so a pass keys every pair alike
        self.members = None
        self.weights_ref = self._expected_weights_ref()
        self.info = result_cache.lookup_info(self._info_key()) if self.weights_ref else None
        self.detector = None
        self._computation = None
        self._worker = None
        self.pending_pairs, self.pending_samples = 0, []
        self.throughput_timed, self.last_flush = 0, time.monotonic()

    def _expected_weights_ref(self) -> str | None:
        if self.is_ensemble:
            return None  # its members are known once it is built
        ref = self.choice.ref
        if ref == "none":
            return "none:None"
        if ref == "random":
            return f"random:seed={self.run.experiment.seed}"
        if ref.startswith("checkpoint:"):
            return f"{ref}:{ref.split(':', 1)[1]}"
        return None  # "auto": ImageNet weights or none at all; only loading tells

    def _info_key(self) -> str:
        return f"{self.name}|{self.weights_ref}|{self.input_size}|{self.device}"

    @property
    def meter_device(self) -> str:
        """Where memory is measured: the GPU when the detector (or one of an ensemble's members) runs there."""
        if self.device.startswith("cuda"):
            return self.device
        if self.device == "mixed":
            return "cuda"
        return "cpu"

    def load(self):
        if self.detector is not None:
            return self.detector
        experiment = self.run.experiment
        options = {"members": [member.build_options() for member in self.member_plan]} if self.is_ensemble else None
        detector = model_cache.get_detector(
            self.name, self.choice.weights, self.choice.ref, self.device, self.input_size, experiment.seed,
            options=options,
        )  # fmt: skip
        info = detector.info.as_dict()
        if info["weights"] == "random":
            info["weights_sha256"] = f"seed={experiment.seed}"  # seeded init: the seed identifies the weights
        info["flops"] = _flops(detector, self.input_size)
        self.precision = precision_of(detector)
        if self.is_ensemble:  # keyed only once built: its members, device and precision are its identity
            self.members = _member_records(detector, experiment.seed)
            self.device, self.key_precision = info["device"], self.precision
            info["members"] = _member_details(detector, self.members, self.member_plan)
            info["extra"] = {k: v for k, v in info["extra"].items() if k != "members"}  # said in info["members"]
            flops = [m["flops"] for m in info["members"] if m["flops"] is not None]
            info["flops"] = sum(flops) if flops else None
            self._computation = None
        self.weights_ref = f"{info['weights']}:{info.get('weights_sha256')}"
        self.info = info
        result_cache.store_info(self._info_key(), info)
        if not getattr(detector, "_diffplatform_warm", False):
            warm_up(detector)
        self.detector = detector
        return detector

    def computation(self, alignment: PairAlignment | None) -> dict:
        """Everything besides the pair and the weights that this detector's result on it depends on."""
        if self._computation is None:
            experiment = self.run.experiment
            options = {"input_size": self.input_size} if self.entry.learned else {}
            # an ensemble's members' input sizes and weights are in "members"; its learned members' runtime here
            self._computation = {
                "code": code_version(),
                "libraries": key_library_versions(),
                "device": _device_record(self.device),
                "precision": self.key_precision,
                "input_size": self.input_size,
                "threshold": experiment.threshold,
                "options": {**options, "runtime": _runtime_options(self.learned)},
                "members": self.members,
                "result_batch_size": measurement.LATENCY_BATCH_SIZE,
            }
        align = _alignment_record(self.run.experiment.align, alignment)
        return result_cache.computation_record(**self._computation, alignment=align)

    def cache_key(self, pair: ImagePair, alignment: PairAlignment | None = None) -> str:
        if self.weights_ref is None:
            self.load()
        return result_cache.result_cache_key(
            owner_id=self.run.experiment.owner_id, pair=pair, detector=self.name, weights_ref=self.weights_ref,
            computation=self.computation(alignment),
        )  # fmt: skip

    def static_record(self) -> dict:
        """What the run's record says about this detector whatever pairs it computes."""
        from inference.memory import memory_device, memory_kind_for

        return {
            "input_size": self.input_size,
            "input_size_source": self.input_size_source,
            "device": self.device,
            "precision": self.precision,
            "memory_kind": memory_kind_for(self.meter_device),
            "memory_device": memory_device(self.meter_device),
            "latency_batch_size": measurement.LATENCY_BATCH_SIZE,
        }

    def record(self) -> None:
        if self.info is None:
            self.load()
        _record_detector(self.run.pk, self.name, {**self.info, **self.static_record()})

    # ----------------------------------------------------------------------- measuring
    def predict_timed(self, item: PairInputs):
        """`(probability map, milliseconds, memory reading)` of one pair predicted alone (batch 1)."""
        from inference.memory import measure_peak_memory
        from inference.profiling import timed_call

        detector = self.load()
        with measure_peak_memory(self.meter_device) as memory:
            prob, elapsed_ms = timed_call(lambda: detector.predict(item.a, item.b), self.device)
        return prob, elapsed_ms, memory

    def time_throughput(self, inputs: list, *, final: bool) -> None:
        """Time `predict_batch` on this batch's inputs when a throughput sample is still wanted: batches
        of BATCH_SIZE pairs (a smaller one only when it is the task's last and none was timed)."""
        if self.throughput_timed >= THROUGHPUT_BATCHES:
            return
        if len(inputs) < BATCH_SIZE and not (final and self.throughput_timed == 0):
            return
        from inference.memory import measure_peak_memory
        from inference.profiling import timed_call

        detector = self.load()
        pairs = [(item.a, item.b) for item in inputs]
        warm_sizes = getattr(detector, "_diffplatform_batch_warm", set())
        if len(pairs) not in warm_sizes:
            detector.predict_batch(pairs)  # untimed: the first call at a new batch shape
            detector._diffplatform_batch_warm = warm_sizes | {len(pairs)}
        with measure_peak_memory(self.meter_device) as memory:
            _, elapsed_ms = timed_call(lambda: detector.predict_batch(pairs), self.device)
        self.pending_samples.append(
            {"batch_size": len(pairs), "seconds": elapsed_ms / 1000, "peak_memory_mb": memory.peak_mb}
        )
        self.throughput_timed += 1

    def worker(self) -> dict:
        if self._worker is None:
            self._worker = worker_record(self.device, self.precision)
        return self._worker

    def flush_measurements(self, *, force: bool = False) -> None:
        """Add the pairs computed and throughput timed since the last flush to the run's record
        (at most about once a second, and at the end of the task)."""
        if not self.pending_pairs and not self.pending_samples:
            return
        if not force and time.monotonic() - self.last_flush < PERSIST_EVERY_S:
            return
        worker, pairs, samples = self.worker(), self.pending_pairs, self.pending_samples
        _update_detector_record(
            self.run.pk, self.name, lambda _env, record: measurement.add_to_record(record, worker, pairs, samples)
        )
        self.pending_pairs, self.pending_samples, self.last_flush = 0, [], time.monotonic()


def _member_records(ensemble, seed: int) -> list[dict]:
    """An ensemble's members as its identity: name, mixing weight, weights, input size, precision."""
    records = []
    for member, weight in zip(ensemble.members, ensemble.member_weights, strict=True):
        info = member.info
        records.append({
            "name": info.name,
            "weight": weight,
            "weights": info.weights,
            "weights_sha256": info.weights_sha256 if info.weights != "random" else f"seed={seed}",
            "input_size": info.input_size,
            "device": info.device,
            "precision": precision_of(member),
        })  # fmt: skip
    return records


def _member_details(ensemble, records: list[dict], plan: list[EnsembleMember]) -> list[dict]:
    """The run's record of an ensemble's members: their identity (`_member_records`) with where each
    input size comes from (as for a detector alone) and each member's FLOPs at that size."""
    details = []
    for member, record, planned in zip(ensemble.members, records, plan, strict=True):
        details.append({
            **record,
            "input_size_source": planned.input_size_source,
            "flops": _flops(member, member.info.input_size if member.info.learned else None),
        })  # fmt: skip
    return details


def warm_up(detector) -> None:
    """One untimed call on a small pair after loading, so lazy initialisation is not counted as latency."""
    blank = np.zeros((64, 64, 3), np.uint8)
    detector.predict(blank, blank)
    detector._diffplatform_warm = True


def run_detector(run_id: int, name: str) -> None:
    run = Run.objects.select_related("experiment__dataset", "experiment__owner").get(pk=run_id)
    if run.state != RunState.RUNNING:
        return
    pairs = list(scored_pairs(run.experiment))
    finished = set(run.results.filter(detector=name).values_list("pair_id", flat=True))
    todo = [p for p in pairs if p.pk not in finished]
    reporter = ProgressReporter(run.pk, name, len(pairs), len(finished))
    slot = DetectorSlot(run, name)
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


# --------------------------------------------------------------------------- finish
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


def failed_detectors(run: Run) -> dict[str, str]:
    """{detector: reason} of the run's detectors whose task failed (recorded by `fail_detector`)."""
    entries = (run.progress or {}).get("detectors", {})
    return {
        name: entries[name]["failed"]
        for name in run.experiment.detectors
        if isinstance(entries.get(name), dict) and entries[name].get("failed")
    }


def failure_summary(failed: dict[str, str]) -> str:
    return "Failed detectors: " + "; ".join(f"{name}: {reason}" for name, reason in failed.items())


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
