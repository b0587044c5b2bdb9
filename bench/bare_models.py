"""The bare models of the engine benchmark: each detector's network alone, in the calls the engine makes,
and siamese-mobilenetv3 pairs/s at batch 1 vs batch 8. Called after Django is set up (`bench.engine`)."""

import time
from dataclasses import dataclass


def engine_calls(count: int, *, latency_alone: bool = True) -> list[list[int]]:
    """The forward calls the engine makes for `count` computed pairs, as lists of pair positions: in
    batches of the engine's `BATCH_SIZE`, the pairs it samples for latency (`engine.latency_sample`) each alone."""
    from types import SimpleNamespace

    from experiments.runs.engine import BATCH_SIZE, latency_sample

    alone = latency_sample([SimpleNamespace(pk=index) for index in range(count)]) if latency_alone else set()
    calls = []
    for start in range(0, count, BATCH_SIZE):
        chunk = range(start, min(start + BATCH_SIZE, count))
        calls += [[index] for index in chunk if index in alone]
        calls += [rest] if (rest := [index for index in chunk if index not in alone]) else []
    return calls


@dataclass
class BareModel:
    """One detector as the benchmark times it bare: built once (as the worker keeps its networks), with
    its inputs preprocessed beforehand for the engine's calls (`engine_calls`) and for batch 8 only."""

    step: object
    calls: dict

    @classmethod
    def build(cls, name: str, pairs, size: int, seed: int) -> "BareModel":
        import torch

        from inference import create_detector
        from inference.catalogue import catalogue_entry
        from inference.runtime import seed_everything

        seed_everything(seed)
        learned = catalogue_entry(name).learned
        detector = create_detector(name, weights="random" if learned else None, device="cpu",
                                   **({"input_size": size} if learned else {}))  # fmt: skip

        def prepared(call):
            chosen = [pairs[index] for index in call]
            if not learned:
                return (chosen,)
            return detector.preprocess([a for a, _ in chosen]), detector.preprocess([b for _, b in chosen])

        if learned:

            def step(xa, xb):
                torch.sigmoid(detector.forward_logits(xa, xb))
        else:
            step = detector.predict_batch
        calls = {alone: [prepared(call) for call in engine_calls(len(pairs), latency_alone=alone)]
                 for alone in (True, False)}  # fmt: skip
        return cls(step, calls)

    def seconds(self, *, latency_alone: bool = True) -> float:
        """The calls the engine makes (its latency samples alone, the rest at batch 8), or with
        `latency_alone=False` every pair at batch 8; one untimed call per batch shape first."""
        calls = self.calls[latency_alone]
        for size in {_batch_size(arguments) for arguments in calls}:
            self.step(*next(arguments for arguments in calls if _batch_size(arguments) == size))
        started = time.perf_counter()
        for arguments in calls:
            self.step(*arguments)
        return time.perf_counter() - started


def _batch_size(arguments) -> int:
    return len(arguments[0])


def batching_pairs_per_s(detector, pairs) -> tuple[float, float]:
    """(batch 1, batch 8) pairs/s of `siamese-mobilenetv3` on the same pairs, interleaved group by
    group (8 pairs one at a time, then the same 8 as one batch, the order alternating), so a change
    in the machine's speed during the measurement weighs on both alike."""
    from experiments.runs.engine import BATCH_SIZE

    one_s = batched_s = 0.0
    for index, start in enumerate(range(0, len(pairs), BATCH_SIZE)):
        group = pairs[start : start + BATCH_SIZE]

        def alone(group=group):
            for a, b in group:
                detector.predict(a, b)

        for step in (alone, lambda group=group: detector.predict_batch(group))[:: 1 if index % 2 == 0 else -1]:
            started = time.perf_counter()
            step()
            elapsed = time.perf_counter() - started
            if step is alone:
                one_s += elapsed
            else:
                batched_s += elapsed
    return len(pairs) / one_s, len(pairs) / batched_s
