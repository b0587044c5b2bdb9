"""`bench.engine` (`bench.bare_models`) times the bare models in exactly the calls the engine makes (latency samples alone,
the rest in batches of 8): checked against the calls a real run makes."""

import pytest

from bench.bare_models import engine_calls
from experiments.datasets.benchmark import synthetic_dataset_create
from experiments.runs import engine
from experiments.runs import services as run_services
from experiments.runs.selectors import scored_pairs
from inference.detectors.base import ClassicalDetector

SIZE = 40


@pytest.mark.django_db
@pytest.mark.parametrize("count", [25, 100])
def test_the_bare_calls_are_the_calls_of_a_run(user, monkeypatch, count):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    dataset = synthetic_dataset_create(owner=user, name="calls", pairs=count, size=SIZE, seed=3)
    splits = sorted(set(dataset.pairs.values_list("split", flat=True)))
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"],
                                                splits=splits)  # fmt: skip
    sizes, predict_batch = [], ClassicalDetector.predict_batch

    def recorded(detector, pairs):
        if pairs and pairs[0][1].shape[0] == SIZE:  # not the 64 px warm-up call of a fresh detector
            sizes.append(len(pairs))
        return predict_batch(detector, pairs)

    monkeypatch.setattr(ClassicalDetector, "predict_batch", recorded)
    run = run_services.run_start(experiment=experiment)
    assert engine.prepare_run(run.pk)
    engine.run_detector(run.pk, "absdiff")
    scored = len(list(scored_pairs(experiment)))
    assert sum(sizes) >= scored
    assert sizes[: len(engine_calls(scored))] == [len(call) for call in engine_calls(scored)]
    assert sum(len(call) for call in engine_calls(scored)) == scored
    assert sum(len(call) == 1 for call in engine_calls(scored)) >= min(scored, 10) - 1
