"""One detector in one run inside a worker: its plan (weights, size, device: `experiments.plans`),
the loaded model (from the per-process cache), its cache keys, and the record of what it ran as."""

import dataclasses
import logging
import time

from experiments.models import ImagePair, PairAlignment, Run
from experiments.plans.record import DetectorPlan
from experiments.runs import measurement, model_cache, result_cache
from experiments.runs.detector_setup import alignment_record, device_record, loaded_record, runtime_options
from experiments.runs.environment import code_version, key_library_versions, worker_record
from experiments.runs.pair_inputs import PairInputs
from experiments.runs.run_records import PERSIST_EVERY_S, record_detector, update_detector_record

logger = logging.getLogger(__name__)


THROUGHPUT_BATCHES = 4  # batched calls timed per detector task (after one untimed call at the batch shape)


class DetectorSlot:
    """One detector of a run, loaded only when a pair misses the result cache.

    The cache key needs the weights' identity; for classical, seeded-random and checkpoint weights
    it is known without loading the model, so a fully cached pass never loads it at all. An
    ensemble is always built first: its members (and their weights) are part of its identity.
    Its members are planned as each would be alone in the run (`DetectorPlan.members`).

    The slot also measures: the sampled pairs alone (batch 1: latency), a few of the batched calls
    that compute the other maps (throughput), and the memory of both; `flush_measurements` adds them to the run's record of this detector."""

    def __init__(self, run: Run, plan: DetectorPlan, batch_size: int = 8):
        self.run, self.plan, self.name = run, plan, plan.name
        self.batch_size = batch_size  # the engine's batch: the size throughput is timed at
        self.external = plan.weights.load if plan.made_elsewhere else None  # uploaded maps in place of a model
        self.input_size, self.input_size_source = plan.input_size, plan.input_size_source
        self.is_ensemble = bool(plan.members)
        self.learned = plan.learned_inside
        self.device, self.precision = plan.device, plan.precision
        self.key_precision = self.precision  # fixed before loading, so a pass keys every pair alike
        self.members = None
        self.threshold = run.experiment.threshold  # under the validation rule: `threshold_rules.detector_threshold`
        self.weights_ref = self._expected_weights_ref()
        self.info = result_cache.lookup_info(self._info_key()) if self.weights_ref else None
        self.detector = None
        self._computation = None
        self.worker = None  # `environment.worker_record` of this worker, made when the detector is loaded
        self.pending_pairs, self.pending_samples = 0, []
        self.throughput_timed, self.last_flush = 0, time.monotonic()

    def _expected_weights_ref(self) -> str | None:
        if self.is_ensemble:
            return None  # its members are known once it is built
        return self.plan.weights.identity(self.run.experiment.seed)

    def _info_key(self) -> str:
        # the detector's record says how it scales large pairs: runs that differ only in that differ here
        scaling = self.plan.scaling if self.learned else ""
        return f"{self.name}|{self.weights_ref}|{self.input_size}|{self.device}|{scaling}"

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
        if self.external is not None:  # uploaded maps: nothing to load
            self.detector, self.info = self.external, self.external.info
        else:
            self._load_model()
        return self.detector

    def _load_model(self) -> None:
        experiment = self.run.experiment
        plan = self.plan
        options = {"members": [member.build_options() for member in plan.members]} if self.is_ensemble else None
        detector = model_cache.get_detector(
            self.name, plan.weights.load, plan.weights.ref, self.device, self.input_size, experiment.seed,
            options=options, scaling=plan.scaling, build=plan.builder(),
        )  # fmt: skip
        info, self.precision, self.members = loaded_record(detector, plan, experiment.seed)
        if self.is_ensemble:  # keyed only once built: its members, device and precision are its identity
            self.device, self.key_precision = info["device"], self.precision
            self._computation = None
        self.weights_ref = f"{info['weights']}:{info.get('weights_sha256')}"
        self.info = info
        result_cache.store_info(self._info_key(), info)
        model_cache.warm_up(detector)
        self.detector = detector

    def computation(self, alignment: PairAlignment | None) -> dict:
        """Everything besides the pair and the weights that this detector's result on it depends on."""
        if self._computation is None:
            options = {"input_size": self.input_size} if self.plan.learned else {}
            options.update({"scaling": self.plan.scaling} if self.learned else {})  # resize or tile (inference.tiling)
            # an ensemble's members' input sizes and weights are in "members"; its learned members' runtime here
            self._computation = {
                "code": code_version(),
                "libraries": key_library_versions(),
                "device": device_record(self.device),
                "precision": self.key_precision,
                "input_size": self.input_size,
                "threshold": self.threshold,
                "options": {**options, "runtime": runtime_options(self.learned)},
                "members": self.members,
                "result_batch_size": self.batch_size,  # maps computed in batches of up to this size
            }
        align = alignment_record(self.run.experiment.align, alignment)
        return result_cache.computation_record(**self._computation, alignment=align)

    def cache_key(self, pair: ImagePair, alignment: PairAlignment | None = None) -> str:
        if self.weights_ref is None:
            self.load()
        # uploaded maps: the pair's stored map is the weights, so a re-upload is never served a stale result
        weights_ref = self.external.pair_ref(pair) if self.external is not None else self.weights_ref
        return result_cache.result_cache_key(
            owner_id=self.run.experiment.owner_id, pair=pair, detector=self.name, weights_ref=weights_ref,
            computation=self.computation(alignment),
        )  # fmt: skip

    def static_record(self) -> dict:
        """What the run's record says about this detector whatever pairs it computes."""
        from inference.memory import memory_device, memory_kind_for

        if self.external is not None:
            return self.external.static_record()
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
        record = {**self.info, **self.static_record()}
        record_detector(self.run.pk, self.name, record)

    # ----------------------------------------------------------------------- measuring
    def measure_model_memory(self, pair: ImagePair | None) -> None:
        """Put the detector's own memory (`inference.memory_probe`: weights plus one batch-1 prediction
        of a pair of `pair`'s size) in its record: from the cache, else measured once (on the CPU in a
        fresh process) and cached per weights, input size, pair size, device and scaling. Uploaded maps
        are not measured; a failed measurement is recorded with its reason, not cached."""
        from django.conf import settings

        from inference.memory_probe import METHOD_VERSION, measure_model_memory

        if not settings.MODEL_MEMORY_PROBE or pair is None or self.plan.made_elsewhere:
            return
        if self.weights_ref is None:
            self.load()
        device = self.device if self.device.startswith("cuda") else self.meter_device
        height, width = pair.b_height, pair.b_width
        key = f"v{METHOD_VERSION}|{self.name}|{self.weights_ref}|{self.input_size}|{height}x{width}|{device}"
        key += f"|{self.plan.scaling}"
        figure = result_cache.lookup_model_memory(key)
        if figure is None:
            members = {"members": [m.build_options() for m in self.plan.members]} if self.is_ensemble else None
            model_file = self.plan.weights.load if self.plan.kind == "onnx" else None
            onnx = None if model_file is None else {"path": model_file.path, "sha256": model_file.sha256,
                                                    "contract": dataclasses.asdict(model_file.contract)}  # fmt: skip
            try:
                figure = measure_model_memory(
                    name=self.name, weights=None if onnx else self.plan.weights.load, input_size=self.input_size,
                    device=device, height=height, width=width, seed=self.run.experiment.seed,
                    scaling=self.plan.scaling, options=members, onnx=onnx,
                )  # fmt: skip
            except Exception as exc:  # noqa: BLE001 - the run goes on without the figure, which says why
                logger.warning("model memory of %s not measured: %s", self.name, exc)
                figure = {"model_memory_mib": None, "model_memory_error": str(exc)[:500]}
            else:
                result_cache.store_model_memory(key, figure)

        def update(_environment: dict, record: dict) -> None:
            record.pop("model_memory_error", None)  # a retried task's figure replaces an earlier failure
            record.update(figure)

        update_detector_record(self.run.pk, self.name, update)

    def predict_timed(self, item: PairInputs):
        """`(probability map, milliseconds, memory reading)` of one pair predicted alone (batch 1)."""
        from inference.memory import measure_peak_memory
        from inference.profiling import timed_call

        if self.external is not None:
            return self.external.predict_timed(item)
        detector = self.load()
        with measure_peak_memory(self.meter_device) as memory:
            prob, elapsed_ms = timed_call(lambda: detector.predict(item.a, item.b), self.device)
        return prob, elapsed_ms, memory

    def predict_untimed(self, inputs: list) -> list:
        """The maps of `inputs`, nothing measured (the validation pairs a threshold is chosen on)."""
        if self.external is not None:
            return [self.external.predict_timed(item)[0] for item in inputs]
        return self.load().predict_batch([(item.a, item.b) for item in inputs])

    def predict_pairs(self, inputs: list, *, alone: set[int], final: bool) -> list[tuple]:
        """`(map, milliseconds or None, memory reading or None)` per input: the inputs at positions
        `alone` are predicted one by one (`predict_timed`: their latency), the others together in one
        `predict_batch` call (`_predict_batch`: timed for throughput when its shape is warm)."""
        if self.external is not None:  # uploaded maps: nothing computed, nothing timed
            return [self.external.predict_timed(item) for item in inputs]
        answers: list = [None] * len(inputs)
        for index in sorted(alone):
            answers[index] = self.predict_timed(inputs[index])
        together = [index for index in range(len(inputs)) if index not in alone]
        if together:
            maps = self._predict_batch([inputs[index] for index in together], final=final)
            for index, prob in zip(together, maps, strict=True):
                answers[index] = (prob, None, None)
        elif final and self.throughput_timed == 0:  # a small task, every pair timed alone: time them together too
            self._predict_batch(inputs, final=True)
        return answers

    def _predict_batch(self, inputs: list, *, final: bool) -> list:
        """The maps of `inputs` from one `predict_batch` call. The call is timed (a throughput sample)
        while fewer than `THROUGHPUT_BATCHES` were, when it has `batch_size` pairs and its shape was
        seen before (the first call at a shape is the untimed warm-up). A task whose last batch ends
        without any sample times its last batch once more, so small runs still report throughput."""
        from inference.memory import measure_peak_memory
        from inference.profiling import timed_call

        detector = self.load()
        pairs = [(item.a, item.b) for item in inputs]
        wanted = self.throughput_timed < THROUGHPUT_BATCHES
        last_chance = final and self.throughput_timed == 0
        warm_sizes = getattr(detector, "_diffplatform_batch_warm", set())
        if not wanted or (len(pairs) != self.batch_size and not last_chance) or len(pairs) not in warm_sizes:
            maps = detector.predict_batch(pairs)
            detector._diffplatform_batch_warm = warm_sizes | {len(pairs)}
            if not (wanted and last_chance):
                return maps
        with measure_peak_memory(self.meter_device) as memory:
            maps, elapsed_ms = timed_call(lambda: detector.predict_batch(pairs), self.device)
        self.pending_samples.append(
            {"batch_size": len(pairs), "seconds": elapsed_ms / 1000, "peak_memory_mb": memory.peak_mb}
        )
        self.throughput_timed += 1
        return maps

    @property
    def timing_throughput(self) -> bool:
        """Whether the next batched call may be timed (a throughput sample)."""
        return self.throughput_timed < THROUGHPUT_BATCHES

    def flush_measurements(self, *, force: bool = False) -> None:
        """Add the pairs computed and throughput timed since the last flush to the run's record
        (at most about once a second, and at the end of the task)."""
        if not self.pending_pairs and not self.pending_samples:
            return
        if not force and time.monotonic() - self.last_flush < PERSIST_EVERY_S:
            return
        if self.worker is None:
            self.worker = worker_record(self.device, self.precision)  # the machine that computes, as it does
        worker, pairs, samples = self.worker, self.pending_pairs, self.pending_samples
        update_detector_record(
            self.run.pk, self.name, lambda _env, record: measurement.add_to_record(record, worker, pairs, samples)
        )
        self.pending_pairs, self.pending_samples, self.last_flush = 0, [], time.monotonic()
