"""Model memory (issue 27 item 5): a detector's own memory, measured in a fresh process, is a few MB
for a classical detector, at least the weights for a learned one and growing with its input size,
and does not depend on what the calling process holds."""

import numpy as np
import pytest

from inference.memory_probe import CPU_MODEL_RSS, measure_model_memory
from inference.sandbox import SandboxRefusal


def measure(name, input_size=None, size=256, weights=None):
    return measure_model_memory(
        name=name, weights=weights, input_size=input_size, device="cpu", height=size, width=size
    )


def test_absdiffs_model_memory_is_a_few_mb():
    figure = measure("absdiff")
    assert figure["model_memory_kind"] == CPU_MODEL_RSS
    assert 0 < figure["model_memory_mib"] < 64
    assert figure["weights_mib"] is None and figure["model_memory_pair"] == [256, 256]


def test_a_learned_detector_needs_its_weights_and_more_at_a_larger_input():
    small, large = measure("siamese-unet", input_size=64), measure("siamese-unet", input_size=512)
    weights = small["weights_mib"]
    # the network's parameters and buffers, counted from its tensors: 1.35 million float32 values
    assert weights == large["weights_mib"] and 4 < weights < 7
    assert small["model_memory_mib"] >= weights
    # activations of one forward pass: 64x64 -> 512x512 is 64 times the pixels
    assert large["model_memory_mib"] > small["model_memory_mib"] + 50


def test_the_figure_is_not_the_calling_processs_memory():
    before = measure("absdiff")["model_memory_mib"]
    held = np.ones(500 * 2**20, dtype=np.uint8)  # 500 MiB resident in this process (every page written)
    try:
        after = measure("absdiff")["model_memory_mib"]
    finally:
        del held
    assert after < 64 and abs(after - before) < 16


def test_an_unknown_detector_is_a_refusal_saying_so():
    with pytest.raises(SandboxRefusal, match="nope"):
        measure("nope")
