"""The shipped checkpoints on the demo dataset reproduce docs/weights.md's figures at their own input size."""

import io

import pytest
from django.core.management import call_command

from experiments.models import Dataset, ModelCheckpoint
from experiments.runs import services as run_services
from tests.factories import run_in_process

NO_CHANGE_CATEGORIES = {"illumination", "noise_and_compression"}
# docs/weights.md: F1 pooled over the changed categories of the test split. `bench.quality` scores
# each detector at its best validation threshold; the platform's default threshold is 0.5.
AT_VALIDATION_THRESHOLD = {
    "siamese-unet": (0.4392, 0.9066),
    "siamese-mobilenetv3": (0.1569, 0.7997),
    "siamese-resnet50": (0.2941, 0.7404),
    "siamese-vgg16": (0.1373, 0.7105),
    "resnet50-compare-head": (0.7882, 0.1349),
}
AT_DEFAULT_SETTINGS = {
    "siamese-unet": 0.907,
    "siamese-mobilenetv3": 0.769,
    "siamese-resnet50": 0.721,
    "siamese-vgg16": 0.681,
    "resnet50-compare-head": 0.143,
}


def changed_f1(run, name: str) -> float:
    changed = [c for c in run.leaderboard["categories"] if c not in NO_CHANGE_CATEGORIES]
    tp = fp = fn = 0
    for result in run.results.filter(detector=name, pair__category__in=changed):
        tp, fp, fn = tp + result.metrics["tp"], fp + result.metrics["fp"], fn + result.metrics["fn"]
    return 2 * tp / (2 * tp + fp + fn)


@pytest.fixture
def demo(user):
    call_command("setup_demo", "--user", user.username, stdout=io.StringIO(), stderr=io.StringIO())
    return Dataset.objects.get(owner=user, name="synthetic-demo")


@pytest.mark.django_db
def test_the_demo_is_the_unseen_test_split_and_gives_the_documented_f1(user, demo, no_queue):
    assert demo.pairs.count() == 72 and set(demo.pairs.values_list("split", flat=True)) == {"test"}
    run = run_in_process(
        run_services.experiment_start(owner=user, dataset=demo, name="demo", detectors=list(AT_DEFAULT_SETTINGS))
    )
    assert run.state == "succeeded", run.error
    rows = {row["detector"]: row for row in run.leaderboard["detectors"]}
    for name, documented in AT_DEFAULT_SETTINGS.items():
        row = rows[name]
        assert row["weights"] == ModelCheckpoint.objects.get(detector=name, is_public=True).provenance
        assert (row["input_size"], row["input_size_source"]) == (128, "checkpoint")
        assert row["trained_on_pairs"] == 0
        assert changed_f1(run, name) == pytest.approx(documented, abs=0.005), name
    for name, (threshold, documented) in AT_VALIDATION_THRESHOLD.items():  # bench.quality's own setting
        run = run_in_process(
            run_services.experiment_start(owner=user, dataset=demo, name=name, detectors=[name], threshold=threshold)
        )
        assert changed_f1(run, name) == pytest.approx(documented, abs=0.005), (name, threshold)
