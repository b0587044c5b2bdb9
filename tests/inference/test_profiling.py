import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from inference import memory, profiling
from inference.profiling import Profile, count_flops, device_name, profile_detector


class TinyChangeNet(nn.Module):
    """forward(xa, xb) -> logits N x 1 x H x W, as the detector contract asks."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(6, 1, kernel_size=3, padding=1)

    def forward(self, xa, xb):
        return self.conv(torch.cat([xa, xb], dim=1))


class FakeDetector:
    """Honours the detector contract; records calls; can advance a fake clock per call."""

    def __init__(self, *, model=None, params=None, input_size=None, device="cpu", clock=None):
        self.info = SimpleNamespace(params=params, input_size=input_size, device=device)
        self.device = torch.device(device)
        if model is not None:
            self.model = model.to(self.device)
        self.clock = clock
        self.calls = []
        self.held = []

    def predict(self, a, b):
        self.calls.append(("predict", a.shape))
        if self.clock is not None:
            self.clock.tick()
        return np.zeros(b.shape[:2], np.float32)

    def predict_batch(self, pairs):
        self.calls.append(("predict_batch", len(pairs)))
        return [np.zeros(b.shape[:2], np.float32) for _, b in pairs]


class FakeClock:
    """perf_counter stand-in: each predict advances it by the next duration (seconds)."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = list(durations)

    def perf_counter(self):
        return self.now

    def tick(self):
        self.now += self.durations.pop(0) if self.durations else 0.0


def pairs_of(count, size=16):
    rng = np.random.default_rng(0)
    return [
        (
            rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
            rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        )
        for _ in range(count)
    ]


def test_latency_percentiles_come_from_the_timed_calls_only(monkeypatch):
    # One memory-probe call and two warm-up calls take 1 s each; timed calls 10..50 ms.
    clock = FakeClock([1.0, 1.0, 1.0, 0.010, 0.020, 0.030, 0.040, 0.050])
    monkeypatch.setattr(profiling.time, "perf_counter", clock.perf_counter)
    detector = FakeDetector(clock=clock)

    result = profile_detector(detector, pairs_of(5), warmup=2)

    assert result.latency_ms_p50 == pytest.approx(30.0)
    assert result.latency_ms_p95 == pytest.approx(48.0)
    assert result.latency_ms_mean == pytest.approx(30.0)
    assert result.timed_calls == 5
    assert result.warmup == 2


def test_warmup_and_repeats_set_the_number_of_calls():
    detector = FakeDetector()

    profile_detector(detector, pairs_of(3), warmup=2, repeats=7)

    # On CPU one extra untimed call measures memory, then 2 warm-up and 7 timed calls.
    assert len(detector.calls) == 1 + 2 + 7


def test_batches_go_through_predict_batch():
    detector = FakeDetector()

    result = profile_detector(detector, pairs_of(5), warmup=0, batch_size=2)

    assert result.batch_size == 2
    assert result.timed_calls == 3  # batches of 2, 2 and 1
    assert {kind for kind, _ in detector.calls} == {"predict_batch"}


def test_cpu_memory_is_the_rss_growth_of_the_first_call(monkeypatch):
    # The resident set size is faked: a real process may reuse memory it already holds.
    class FakeProcess:
        rss = 500 * 2**20

        def memory_info(self):
            return SimpleNamespace(rss=FakeProcess.rss)

    class Hungry(FakeDetector):
        def predict(self, a, b):
            if not self.held:
                self.held.append(True)
                FakeProcess.rss += 64 * 2**20  # the first call grows the process by 64 MiB
            return super().predict(a, b)

    monkeypatch.setattr(memory.psutil, "Process", FakeProcess)

    result = profile_detector(Hungry(), pairs_of(1), warmup=2, repeats=3)

    assert result.memory_kind == "cpu_rss_peak_delta"
    assert result.peak_memory_mb == pytest.approx(64.0)


def test_params_and_flops_come_from_the_detector():
    detector = FakeDetector(model=TinyChangeNet(), params=61)

    result = profile_detector(detector, pairs_of(2, size=16), warmup=0)

    assert result.params == 61
    assert result.flops == 2 * (16 * 16) * (6 * 3 * 3)


def test_flops_use_the_detector_input_size_when_it_has_one():
    detector = FakeDetector(model=TinyChangeNet(), input_size=32)

    result = profile_detector(detector, pairs_of(1, size=16), warmup=0)

    assert result.flops == 2 * (32 * 32) * (6 * 3 * 3)
    assert result.params == sum(p.numel() for p in detector.model.parameters())


def test_classical_detector_has_no_flops():
    result = profile_detector(FakeDetector(params=0), pairs_of(1), warmup=0)

    assert result.flops is None
    assert result.params == 0


def test_profile_as_dict_is_json_safe():
    result = profile_detector(FakeDetector(model=TinyChangeNet()), pairs_of(2), warmup=1)

    summary = result.as_dict()

    json.dumps(summary, allow_nan=False)
    assert set(summary) >= {
        "latency_ms_p50",
        "latency_ms_p95",
        "latency_ms_mean",
        "peak_memory_mb",
        "memory_kind",
        "params",
        "flops",
        "device_name",
        "batch_size",
    }
    assert isinstance(result, Profile)


def test_it_rejects_an_empty_pair_list():
    with pytest.raises(ValueError, match="at least one"):
        profile_detector(FakeDetector(), [])


def test_count_flops_of_a_linear_layer_is_two_per_multiply_add():
    assert count_flops(nn.Linear(10, 5), torch.zeros(3, 10)) == 2 * 3 * 10 * 5


def test_count_flops_of_a_conv_layer():
    conv = nn.Conv2d(3, 8, kernel_size=3, stride=2, padding=1)

    flops = count_flops(conv, torch.zeros(1, 3, 32, 32))

    assert flops == 2 * (8 * 16 * 16) * (3 * 3 * 3)


def test_count_flops_builds_two_image_inputs_from_a_size():
    model = TinyChangeNet()

    assert count_flops(model, 8) == 2 * (8 * 8) * 54
    assert count_flops(model, (8, 12)) == 2 * (8 * 12) * 54


def test_count_flops_restores_the_training_mode():
    model = TinyChangeNet().train()

    count_flops(model, 8)

    assert model.training


def test_cpu_device_name_describes_the_processor():
    name = device_name("cpu")

    assert name
    assert "logical CPUs" in name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_profile_reports_peak_allocated_memory():
    detector = FakeDetector(model=TinyChangeNet(), device="cuda")

    result = profile_detector(detector, pairs_of(2), warmup=1)

    assert result.memory_kind == "cuda_peak_allocated"
    assert result.peak_memory_mb > 0  # the model's weights at least
    assert result.device_name == torch.cuda.get_device_name(0)
