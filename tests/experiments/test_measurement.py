"""What a run measures and records per detector (issue 12): input size, batch-1 latency and batched
throughput, memory, the worker that computed, and a result-cache key that covers every input."""

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.cache import cache

from experiments.checkpoints import services as checkpoint_services
from experiments.models import PairAlignment, Result, Run, RunState
from experiments.plans.kinds import run_plan
from experiments.runs import detector_slot, engine, model_cache, result_cache, run_records
from experiments.runs import services as run_services
from experiments.runs.environment import dataset_manifest_hash
from experiments.runs.selectors import scored_pairs
from inference.memory import CPU_PEAK_RSS, measure_peak_memory
from tests.conftest import png_bytes
from tests.factories import make_dataset, run_in_process


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)


@pytest.fixture
def pairs_of_sizes():
    """A labelled pair per side length (A and B differ in one square)."""

    def make(sizes):
        pairs = []
        for index, size in enumerate(sizes):
            rng = np.random.default_rng(index)
            a = rng.integers(60, 120, size=(size, size, 3), dtype=np.uint8)
            b = a.copy()
            b[4:12, 4:12] = (240, 30, 30)
            label = np.zeros((size, size), np.uint8)
            label[4:12, 4:12] = 255
            pairs.append((f"p{index}", png_bytes(a), png_bytes(b), png_bytes(label)))
        return pairs

    return make


def start(user, pairs, detectors, **choices):
    dataset = make_dataset(user, pairs=pairs)
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="m", detectors=detectors, **choices)
    return run_services.run_start(experiment=experiment)


def rows(run) -> dict:
    return {row["detector"]: row for row in run.leaderboard["detectors"]}


# --------------------------------------------------------------------------- input size
@pytest.fixture
def checkpoint_at_64(user, tmp_path):
    """A siamese-unet checkpoint (random weights) whose meta says it was trained at 64 px, registered for `user`."""
    from inference import create_detector
    from inference.weights import save_checkpoint

    detector = create_detector("siamese-unet", weights=None, device="cpu", input_size=64)
    path = tmp_path / "siamese-unet-64.pt"
    sha256 = save_checkpoint(path, detector.model.state_dict(), {"detector": "siamese-unet", "input_size": 64})
    data = path.read_bytes()
    return checkpoint_services.checkpoint_register(
        owner=user, detector="siamese-unet", dataset=None, data=data, sha256=sha256, epochs=1, val_metrics={},
        config={"input_size": 64},
    )  # fmt: skip


@pytest.mark.django_db
def test_without_an_override_a_learned_detector_runs_at_its_checkpoint_size(
    user, pairs_of_sizes, checkpoint_at_64, monkeypatch
):
    from inference.detectors.learned import LearnedDetector
    from inference.profiling import count_flops

    model_cache.clear()
    seen = []
    real = LearnedDetector.forward_logits
    monkeypatch.setattr(
        LearnedDetector, "forward_logits", lambda self, xa, xb: seen.append(tuple(xa.shape[-2:])) or real(self, xa, xb)
    )
    run = run_in_process(start(user, pairs_of_sizes([48, 48]), ["siamese-unet"]))

    assert run.state == RunState.SUCCEEDED, run.error
    row = rows(run)["siamese-unet"]
    assert (row["input_size"], row["input_size_source"]) == (64, "checkpoint")
    record = run.environment["detector_info"]["siamese-unet"]
    assert (record["input_size"], record["input_size_source"]) == (64, "checkpoint")
    assert seen and set(seen) == {(64, 64)}  # warm-up, every pair and the batched timing: all at 64
    detector = next(d for d in model_cache._models.values() if d.info.name == "siamese-unet")
    assert row["flops"] == count_flops(detector.model, 64)  # FLOPs at the size it ran at


@pytest.mark.parametrize(
    ("detector", "choices", "expected"),
    [
        ("siamese-unet", {"input_size": 32}, (32, "override")),
        ("siamese-unet", {}, (256, "registry")),  # random weights: no checkpoint meta
        ("absdiff", {"input_size": 32}, (None, None)),  # classical detectors run at B's size
    ],
)
@pytest.mark.django_db
def test_the_input_size_and_its_source_are_recorded(user, pairs_of_sizes, detector, choices, expected):
    weights = {"siamese-unet": "random"} if detector == "siamese-unet" else {}
    run = run_in_process(start(user, pairs_of_sizes([40]), [detector], detector_weights=weights, **choices))
    row = rows(run)[detector]
    assert (row["input_size"], row["input_size_source"]) == expected
    record = run.environment["detector_info"][detector]
    assert (record["input_size"], record["input_size_source"]) == expected


@pytest.mark.django_db
def test_the_registry_size_is_used_when_a_checkpoint_meta_says_nothing(user, pairs_of_sizes):
    from inference.catalogue import catalogue_entry

    entry = catalogue_entry("siamese-unet")
    choices = {"detectors": ["siamese-unet", "ssim"], "detector_weights": {"siamese-unet": "random"}}
    planned = run_plan(start(user, pairs_of_sizes([40]), **choices), "siamese-unet")
    assert (planned.input_size, planned.input_size_source) == (entry.input_size, "registry")
    dataset = Run.objects.get().experiment.dataset
    overridden = run_services.experiment_create(owner=user, dataset=dataset, name="o", input_size=96, **choices)
    unet, ssim = run_plan(overridden, "siamese-unet"), run_plan(overridden, "ssim")
    assert (unet.input_size, unet.input_size_source) == (96, "override")
    assert (ssim.input_size, ssim.input_size_source) == (None, None)


# --------------------------------------------------------------------------- latency and throughput
class Sleepy:
    """Wraps a detector: each pair costs `width / 2` ms more, so every pair has its own latency."""

    def __init__(self, inner):
        self.inner, self.info = inner, inner.info
        self.single_calls, self.batched_calls = 0, []

    @staticmethod
    def cost_s(a) -> float:
        return a.shape[1] / 2000

    def predict(self, a, b):
        self.single_calls += 1
        time.sleep(self.cost_s(a))
        return self.inner.predict(a, b)

    def predict_batch(self, pairs):
        self.batched_calls.append(len(pairs))
        time.sleep(sum(self.cost_s(a) for a, _ in pairs))
        return self.inner.predict_batch(pairs)


@pytest.fixture
def sleepy(monkeypatch):
    made = []
    real = model_cache.get_detector

    def get_detector(*args, **kwargs):
        made.append(Sleepy(real(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(model_cache, "get_detector", get_detector)
    return made


@pytest.mark.django_db
def test_each_pair_has_its_own_batch_1_latency_and_throughput_is_timed_on_the_batch(user, pairs_of_sizes, sleepy):
    sizes = [20, 80, 140, 200]  # 10, 40, 70 and 100 ms of sleep
    run = run_in_process(start(user, pairs_of_sizes(sizes), ["absdiff"]))

    results = sorted(Result.objects.filter(run=run), key=lambda r: r.pair.name)
    latencies = [r.latency_ms for r in results]
    assert len(set(latencies)) == len(sizes), "one batch time copied to every pair"
    for latency, size in zip(latencies, sizes, strict=True):
        assert latency >= size / 2  # each pair's own call, not the batch's mean
    assert latencies == sorted(latencies)
    row = rows(run)["absdiff"]
    assert row["n_timed"] == 4 and row["latency_batch_size"] == 1
    assert row["latency_ms_p50"] == pytest.approx(float(np.percentile(latencies, 50)))
    # Four pairs: no batch of BATCH_SIZE, so the one batch there was is timed, at its size.
    assert row["throughput_batch_size"] == 4 and row["throughput_batches"] == 1
    assert row["throughput_pairs_per_s"] <= 4 / (sum(sizes) / 2000)
    detector = sleepy[0]
    assert detector.single_calls == 1 + 4  # warm-up, then each pair alone
    assert detector.batched_calls == [4, 4]  # untimed batched warm-up, then the timed batch


@pytest.mark.django_db
def test_maps_are_computed_in_batches_with_latency_timed_alone_on_an_even_sample(
    user, pairs_of_sizes, sleepy, monkeypatch
):
    monkeypatch.setattr(engine, "BATCH_SIZE", 3)
    monkeypatch.setattr(engine, "LATENCY_SAMPLES", 2)
    monkeypatch.setattr(detector_slot, "THROUGHPUT_BATCHES", 2)
    run = run_in_process(start(user, pairs_of_sizes([24] * 20), ["absdiff"]))

    ordered = list(scored_pairs(run.experiment))
    results = {r.pair_id: r for r in Result.objects.filter(run=run)}
    assert len(results) == 20
    timed = sorted(pk for pk, r in results.items() if r.latency_ms is not None)
    assert timed == sorted([ordered[0].pk, ordered[10].pk])  # 2 samples, one every 10 pairs
    assert all(results[pk].latency_ms >= 12 for pk in timed)  # each its own call: 12 ms of sleep at least
    assert all(r.peak_memory_mb is None for pk, r in results.items() if pk not in timed)
    detector = sleepy[0]
    assert detector.single_calls == 1 + 2  # warm-up, then the two sampled pairs alone
    # Each other pair computed exactly once, in batches of 3 (the sampled pair's batch has 2).
    assert detector.batched_calls == [2, 3, 3, 2, 3, 3, 2]
    row = rows(run)["absdiff"]
    assert row["n_timed"] == 2 and row["latency_batch_size"] == 1
    # The first batch of 3 warms the shape; the next two full batches are timed, later ones are not.
    assert row["throughput_batch_size"] == 3 and row["throughput_batches"] == 2
    samples = run.environment["detector_info"]["absdiff"]["throughput_samples"]
    assert row["throughput_pairs_per_s"] == pytest.approx(6 / sum(s["seconds"] for s in samples))
    assert row["throughput_pairs_per_s"] <= 6 / 0.072  # 12 ms of sleep per pair


@pytest.mark.django_db
def test_a_learned_detector_gives_the_same_map_in_a_batch_as_alone(user, pairs_of_sizes):
    """Maps are computed in batches: a pair's map must not depend on the pairs it shares a batch with."""
    from inference import create_detector

    rng = np.random.default_rng(3)
    pairs = [
        (rng.integers(0, 255, (48, 56, 3), np.uint8), rng.integers(0, 255, (48, 56, 3), np.uint8)) for _ in range(5)
    ]
    detector = create_detector("siamese-mobilenetv3", weights="random", device="cpu", input_size=64)
    alone = [detector.predict(a, b) for a, b in pairs]
    together = detector.predict_batch(pairs)
    for single, batched in zip(alone, together, strict=True):
        np.testing.assert_allclose(batched, single, atol=1e-5)
    assert max(float(np.abs(m - alone[0]).max()) for m in alone[1:]) > 1e-3  # the maps differ between pairs


def _cache_key_of(result) -> str:
    return result.heatmap_key.split("/")[1]  # results/<cache key>/heatmap.png


@pytest.mark.django_db
def test_cached_results_keep_their_row_but_never_enter_speed_or_memory(user, pairs_of_sizes):
    pairs = pairs_of_sizes([32, 40, 48, 56])
    first = run_in_process(start(user, pairs, ["absdiff"]))
    first_results = sorted(Result.objects.filter(run=first), key=lambda r: r.pair.name)
    for index, result in enumerate(first_results):
        key = _cache_key_of(result)
        if index < 2:
            cache.delete(f"result:{key}")  # these two are computed again
        else:  # these two are served from the cache, with absurd figures that must not show
            entry = result_cache.lookup(key)
            result_cache.store(key, entry | {"latency_ms": 1e6, "peak_memory_mb": 1e9})

    experiment = first.experiment
    second = run_in_process(run_services.run_start(experiment=experiment))
    second_results = list(Result.objects.filter(run=second))
    assert len(second_results) == 4
    assert sorted(r.from_cache for r in second_results) == [False, False, True, True]
    assert all(r.latency_ms == 1e6 for r in second_results if r.from_cache)  # the row keeps what it was given
    row = rows(second)["absdiff"]
    assert row["n_timed"] == 2 and row["from_cache"] == 2
    assert row["latency_ms_p95"] < 1e6 and row["peak_memory_mb"] < 1e9
    timed = [r.latency_ms for r in second_results if not r.from_cache]
    assert row["latency_ms_p50"] == pytest.approx(float(np.percentile(timed, 50)))

    third = run_in_process(run_services.run_start(experiment=experiment))  # everything cached
    row = rows(third)["absdiff"]
    assert row["n_timed"] == 0 and row["from_cache"] == 4
    assert row["latency_ms_p50"] is row["peak_memory_mb"] is row["throughput_pairs_per_s"] is None
    assert row["worker"] is None  # no worker computed anything in this run


# --------------------------------------------------------------------------- memory
def test_the_cpu_meter_reports_the_process_peak_including_a_short_spike():
    import mmap

    size = 128 * 2**20
    # 128 MiB newly mapped, every page touched, then unmapped inside the block (its own mapping: the
    # heap may hold freed memory already resident, see inference.runtime.keep_freed_memory)
    with measure_peak_memory("cpu") as reading, mmap.mmap(-1, size) as spike:
        for offset in range(0, size, mmap.PAGESIZE):
            spike[offset] = 1
    assert reading.kind == CPU_PEAK_RSS and reading.device == "cpu"
    assert reading.peak_mb >= reading.baseline_mb + 120


@pytest.mark.django_db
def test_a_learned_detector_memory_is_the_process_peak_with_its_weights(user, pairs_of_sizes):
    run = run_in_process(
        start(
            user, pairs_of_sizes([40, 40]), ["siamese-unet"], input_size=32, detector_weights={"siamese-unet": "random"}
        )
    )
    row = rows(run)["siamese-unet"]
    weight_mb = row["params"] * 4 / 2**20
    assert (row["memory_kind"], row["memory_device"]) == ("cpu_peak_rss", "cpu")
    assert row["peak_memory_mb"] >= weight_mb
    assert all(r.peak_memory_mb >= weight_mb for r in Result.objects.filter(run=run))
    assert row["throughput_peak_memory_mb"] >= weight_mb
    assert row["precision"] == "fp32"


# --------------------------------------------------------------------------- worker
def _proc_cpu_model() -> str | None:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return None


@pytest.mark.django_db
def test_each_detector_records_the_worker_that_computed_it(user, pairs_of_sizes, monkeypatch):
    import platform

    run = start(user, pairs_of_sizes([32, 32]), ["absdiff", "ssim"])
    monkeypatch.setattr(platform, "node", lambda: "prepare-host")
    assert engine.prepare_run(run.pk)
    for name, host in (("absdiff", "cpu-worker-a"), ("ssim", "cpu-worker-b")):
        monkeypatch.setattr(platform, "node", lambda host=host: host)
        engine.run_detector(run.pk, name)
    engine.finish_run(run.pk)
    run.refresh_from_db()

    assert run.environment["prepare_worker"]["host"] == "prepare-host"
    hosts = {}
    for name in ("absdiff", "ssim"):
        worker = rows(run)[name]["worker"]
        assert worker == run.environment["detector_info"][name]["worker"]
        assert (worker["device"], worker["precision"], worker["gpu"], worker["cuda"]) == ("cpu", "fp32", None, None)
        assert worker["torch_threads"] == torch.get_num_threads()
        assert worker["versions"]["torch"] == torch.__version__
        if _proc_cpu_model():
            assert worker["cpu"] == _proc_cpu_model()
        assert run.environment["detector_info"][name]["workers"] == [{**worker, "pairs": 2}]
        hosts[name] = worker["host"]
    assert hosts == {"absdiff": "cpu-worker-a", "ssim": "cpu-worker-b"}


@pytest.mark.django_db
def test_a_detector_record_update_keeps_the_other_detectors_records(user, pairs_of_sizes):
    run = start(user, pairs_of_sizes([32]), ["absdiff", "ssim"])
    assert engine.prepare_run(run.pk)
    run_records.update_detector_record(run.pk, "absdiff", lambda env, record: record.update(mark="a"))
    run_records.update_detector_record(run.pk, "ssim", lambda env, record: record.update(mark="b"))
    info = Run.objects.get(pk=run.pk).environment["detector_info"]
    assert (info["absdiff"]["mark"], info["ssim"]["mark"]) == ("a", "b")


def test_a_detector_computed_by_two_workers_lists_both_and_names_the_busiest():
    from experiments.runs.measurement import add_to_record

    record = {}
    add_to_record(record, {"host": "a"}, 3, [{"batch_size": 8, "seconds": 0.1, "peak_memory_mb": 1.0}])
    add_to_record(record, {"host": "b"}, 5, [])  # a retried task ran on another worker
    add_to_record(record, {"host": "a"}, 0, [])  # a batch that stored nothing credits nobody
    assert record["workers"] == [{"host": "a", "pairs": 3}, {"host": "b", "pairs": 5}]
    assert record["worker"] == {"host": "b"}
    assert len(record["throughput_samples"]) == 1


# --------------------------------------------------------------------------- result-cache key
BASE_COMPUTATION = {
    "code": "git:abc",
    "libraries": {"torch": "2.5.0", "torchvision": "0.20.0", "numpy": "2.1.0", "opencv": "4.10.0"},
    "device": {"type": "cpu"},
    "precision": "fp32",
    "alignment": {"align": False},
    "input_size": 256,
    "threshold": 0.5,
    "options": {"input_size": 256, "runtime": {"channels_last": True}},
    "members": [{"name": "absdiff", "weight": 0.5}, {"name": "ssim", "weight": 0.5}],
}
CHANGES = {
    "code version": {"code": "git:def"},
    "torch": {"libraries": {**BASE_COMPUTATION["libraries"], "torch": "2.6.0"}},
    "torchvision": {"libraries": {**BASE_COMPUTATION["libraries"], "torchvision": "0.21.0"}},
    "numpy": {"libraries": {**BASE_COMPUTATION["libraries"], "numpy": "2.2.0"}},
    "opencv": {"libraries": {**BASE_COMPUTATION["libraries"], "opencv": "4.11.0"}},
    "device": {"device": {"type": "cuda", "gpu": "NVIDIA H200", "cuda": "12.4", "cudnn": 90100}},
    "cuda version": {"device": {"type": "cuda", "gpu": "NVIDIA H200", "cuda": "12.6", "cudnn": 90100}},
    "precision": {"precision": "bf16"},
    "alignment on": {"alignment": {"align": True, "method": "sift", "ok": True, "homography": [[1, 0, 0]]}},
    "alignment warp": {"alignment": {"align": True, "method": "orb", "ok": True, "homography": [[1, 0, 2]]}},
    "input size": {"input_size": 128},
    "threshold": {"threshold": 0.4},
    "options": {"options": {"input_size": 256, "runtime": {"channels_last": False}}},
    "members": {"members": [{"name": "absdiff", "weight": 1.0}]},
    "member weights": {"members": [{"name": "absdiff", "weight": 0.7}, {"name": "ssim", "weight": 0.3}]},
}


@pytest.fixture
def a_pair(user, pairs_of_sizes):
    return make_dataset(user, pairs=pairs_of_sizes([32])).pairs.get()


def key_of(pair, **computation):
    return result_cache.result_cache_key(
        owner_id=1, pair=pair, detector="ensemble", weights_ref="none:None",
        computation=result_cache.computation_record(**(BASE_COMPUTATION | computation)),
    )  # fmt: skip


@pytest.mark.django_db
def test_the_same_work_has_the_same_cache_key(a_pair):
    assert key_of(a_pair) == key_of(a_pair, **dict(BASE_COMPUTATION))


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
@pytest.mark.django_db
def test_anything_that_can_change_a_result_changes_the_cache_key(a_pair, change):
    assert key_of(a_pair, **CHANGES[change]) != key_of(a_pair)


@pytest.mark.django_db
def test_the_engine_keys_an_ensemble_by_its_members_and_a_pair_by_its_alignment(user, pairs_of_sizes):
    model_cache.clear()
    run = start(user, pairs_of_sizes([32]), ["ensemble", "absdiff"], align=True)
    pair = run.experiment.dataset.pairs.get()
    slot = detector_slot.DetectorSlot(run, run_plan(run, "ensemble"))
    key = slot.cache_key(pair)
    assert key == detector_slot.DetectorSlot(run, run_plan(run, "ensemble")).cache_key(
        pair
    )  # the same inputs: the same key
    computation = slot.computation(None)
    assert [(m["name"], m["weight"]) for m in computation["members"]] == [("absdiff", 0.5), ("ssim", 0.5)]
    assert computation["code"] and computation["libraries"]["opencv"] and computation["threshold"] == 0.5
    warp = PairAlignment(method="sift", ok=True, homography=[[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    shifted = PairAlignment(method="sift", ok=True, homography=[[1, 0, 3], [0, 1, 0], [0, 0, 1]])
    assert len({key, slot.cache_key(pair, warp), slot.cache_key(pair, shifted)}) == 3


# --------------------------------------------------------------------------- scored pairs
@pytest.mark.django_db
def test_a_run_aligns_computes_and_records_only_its_scored_pairs(user, pairs_of_sizes):
    dataset = make_dataset(user, pairs=pairs_of_sizes([32, 32, 32, 32]))
    for index, pair in enumerate(dataset.pairs.order_by("name")):
        pair.split = "test" if index % 2 else "train"
        pair.save()
    experiment = run_services.experiment_create(
        owner=user, dataset=dataset, name="s", detectors=["absdiff"], align=True, splits=["test"]
    )
    run = run_in_process(run_services.run_start(experiment=experiment))

    assert run.state == RunState.SUCCEEDED, run.error
    scored = set(scored_pairs(experiment).values_list("pk", flat=True))
    assert len(scored) == 2
    assert set(Result.objects.filter(run=run).values_list("pair_id", flat=True)) == scored
    assert set(PairAlignment.objects.filter(run=run).values_list("pair_id", flat=True)) == scored
    assert run.environment["dataset"]["manifest_sha256"] == dataset_manifest_hash(scored_pairs(experiment))
    assert run.environment["dataset"]["scored_pairs"] == 2


@pytest.mark.django_db
def test_a_new_metrics_version_changes_the_cache_key(a_pair, monkeypatch):
    before = key_of(a_pair)
    monkeypatch.setattr(result_cache, "METRICS_VERSION", result_cache.METRICS_VERSION + 1)
    assert key_of(a_pair) != before
