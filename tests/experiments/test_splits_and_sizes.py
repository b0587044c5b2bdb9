"""Which pairs a run scores (splits) and at which size learned detectors run (their own, or an override)."""

import pytest

from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.models import Experiment, Run
from experiments.runs import services as run_services
from experiments.runs.selectors import scored_pairs
from tests.factories import make_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def split_dataset(user, make_pair_bytes):
    dataset = make_dataset(user)
    for index, split in enumerate(["train", "train", "val", "test", "test"]):
        a, b, label = make_pair_bytes(seed=index)
        dataset_services.pair_create(dataset=dataset, name=f"p{index}", a_bytes=a, b_bytes=b, label_bytes=label,
                                     split=split)  # fmt: skip
    return dataset


def start(owner, dataset, **settings) -> Run:
    return run_services.experiment_start(owner=owner, dataset=dataset, name="e", detectors=["absdiff"], **settings)


def test_a_run_scores_the_test_split_by_default_when_there_is_one(user, split_dataset, no_queue):
    run = start(user, split_dataset)
    assert run.experiment.splits == ["test"] and run.progress_total == 2
    assert sorted(p.name for p in scored_pairs(run.experiment)) == ["p3", "p4"]


def test_a_dataset_without_a_test_split_is_scored_whole(user, make_pair_bytes, no_queue):
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)])
    run = start(user, dataset)
    assert run.experiment.splits == [] and run.progress_total == 3


def test_chosen_splits_and_every_pair(user, split_dataset, no_queue):
    assert start(user, split_dataset, splits=["val", "test"]).progress_total == 3
    assert start(user, split_dataset, splits=[]).progress_total == 5
    clone = run_services.run_clone(run=start(user, split_dataset, splits=["train"]))
    assert clone.experiment.splits == ["train"] and clone.progress_total == 2


def test_an_unknown_or_empty_split_is_refused_and_leaves_nothing(user, split_dataset, make_pair_bytes, no_queue):
    with pytest.raises(ServiceError, match="Unknown split"):
        start(user, split_dataset, splits=["holdout"])
    no_test = make_dataset(user, name="no-test", pairs=[("p", *make_pair_bytes())])
    with pytest.raises(ServiceError, match="no pairs in split"):
        start(user, no_test, splits=["test"])
    assert not Experiment.objects.exists()


def test_the_input_size_is_each_detectors_own_unless_overridden(user, split_dataset, no_queue):
    assert start(user, split_dataset).experiment.input_size is None
    assert start(user, split_dataset, input_size=96).experiment.input_size == 96
    with pytest.raises(ServiceError, match="input size"):
        start(user, split_dataset, input_size=8)
