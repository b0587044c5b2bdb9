"""The sandbox: a child process with hard limits whose death or limit is a refusal, never the caller's."""

import os
import time

import pytest

from inference.sandbox import SandboxLimits, SandboxRefusal, run_sandboxed

TARGETS = "tests.inference.sandbox_targets"
LIMITS = SandboxLimits(memory_mb=256, seconds=5)


def refusal(function: str, arguments=None, limits=LIMITS) -> SandboxRefusal:
    with pytest.raises(SandboxRefusal) as caught:
        run_sandboxed(f"{TARGETS}:{function}", arguments or {}, limits)
    return caught.value


def test_a_result_comes_back_as_plain_data_from_another_process():
    answer = run_sandboxed(f"{TARGETS}:echo", {"name": "x", "sizes": [1, 2]}, LIMITS)
    assert answer["arguments"] == {"name": "x", "sizes": [1, 2]}
    assert answer["pid"] != os.getpid()


def test_memory_within_the_budget_is_allowed_and_beyond_it_is_refused():
    assert run_sandboxed(f"{TARGETS}:allocate", {"mb": 64}, LIMITS) == {"allocated": 64 * 2**20}
    refused = refusal("allocate", {"mb": 2048})
    assert refused.kind == "memory" and refused.stage == "allocating 2048 MB"
    assert str(refused) == "needs more than 256 MB of memory"
    assert refusal("allocate_in_numpy", {"mb": 1024}).kind == "memory"


def test_a_child_past_its_time_is_killed_and_refused():
    limits = SandboxLimits(memory_mb=256, seconds=1)
    start = time.monotonic()
    refused = refusal("sleep", {"seconds": 60}, limits)
    assert refused.kind == "time" and refused.stage == "sleeping" and str(refused) == "took longer than 1 s"
    assert time.monotonic() - start < 30
    assert refusal("spin", limits=limits).kind == "time"


@pytest.mark.parametrize(("function", "signal_name"), [("abort", "SIGABRT"), ("segfault", "SIGSEGV")])
def test_a_child_that_crashes_is_a_refusal_naming_the_signal(function, signal_name):
    refused = refusal(function)
    assert refused.kind == "crashed" and signal_name in str(refused)


def test_a_child_killed_from_outside_counts_as_the_out_of_memory_killer():
    assert refusal("kill_self").kind == "memory"


def test_an_error_the_target_raises_is_a_rejection_with_its_message():
    refused = refusal("refuse", {"message": "state_dict does not fit"})
    assert refused.kind == "rejected" and str(refused) == "state_dict does not fit"


def test_what_the_target_prints_never_mixes_with_its_answer():
    assert run_sandboxed(f"{TARGETS}:chatter", {}, LIMITS) == {"ok": True}
