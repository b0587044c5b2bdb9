import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from experiments.models import Dataset, ModelCheckpoint, Result, RunState, TrainingJob
from experiments.reporting.leaderboard import leaderboard_json
from experiments.runs import engine
from experiments.runs import services as run_services
from inference.synthetic import CATEGORIES, NO_CHANGE_CATEGORIES


@pytest.mark.django_db
def test_make_benchmark_stores_every_category_with_labels_and_splits(user):
    out = io.StringIO()
    call_command("make_benchmark", "--name", "bench", "--pairs", "16", "--size", "48", "--seed", "3",
                 "--user", user.username, stdout=out)  # fmt: skip
    dataset = Dataset.objects.get(name="bench")
    pairs = list(dataset.pairs.all())
    assert len(pairs) == 16
    assert {p.category for p in pairs} == set(CATEGORIES)
    assert all(p.label for p in pairs)
    assert {p.split for p in pairs} <= {"train", "val", "test"}
    assert "16 pairs" in out.getvalue()


@pytest.mark.django_db
def test_make_benchmark_is_deterministic_for_a_seed(user):
    for name in ("one", "two"):
        call_command("make_benchmark", "--name", name, "--pairs", "8", "--size", "48", "--seed", "5",
                     "--user", user.username, stdout=io.StringIO())  # fmt: skip
    one = {p.name: (p.a_sha256, p.b_sha256, p.label_sha256) for p in Dataset.objects.get(name="one").pairs.all()}
    two = {p.name: (p.a_sha256, p.b_sha256, p.label_sha256) for p in Dataset.objects.get(name="two").pairs.all()}
    assert one == two


@pytest.mark.django_db
def test_make_benchmark_refuses_an_unknown_owner():
    with pytest.raises(CommandError, match="No user"):
        call_command("make_benchmark", "--user", "nobody", "--pairs", "2", stdout=io.StringIO())


@pytest.mark.django_db
def test_make_benchmark_exports_the_levir_layout(user, tmp_path):
    call_command("make_benchmark", "--name", "exp", "--pairs", "8", "--size", "48", "--user", user.username,
                 "--export", str(tmp_path / "out"), stdout=io.StringIO())  # fmt: skip
    for folder in ("A", "B", "label"):
        assert len(list((tmp_path / "out" / folder).glob("*.png"))) == 8


@pytest.mark.django_db
def test_train_detector_registers_a_checkpoint_that_runs_then_use(user, monkeypatch):
    call_command("make_benchmark", "--name", "tiny", "--pairs", "16", "--size", "64", "--seed", "1",
                 "--user", user.username, stdout=io.StringIO())  # fmt: skip
    out = io.StringIO()
    call_command("train_detector", "siamese-unet", "--dataset", "tiny", "--epochs", "2", "--size", "64",
                 "--batch-size", "4", "--user", user.username, stdout=out, stderr=io.StringIO())  # fmt: skip
    job = TrainingJob.objects.get()
    assert job.state == RunState.SUCCEEDED
    assert len(job.progress["history"]) == 2
    checkpoint = ModelCheckpoint.objects.get()
    assert checkpoint.detector == "siamese-unet" and checkpoint.owner == user
    assert checkpoint.sha256 in out.getvalue()
    assert "siamese-unet: random initialisation" in out.getvalue()

    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    dataset = Dataset.objects.get(name="tiny")
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["siamese-unet"],
                                            input_size=64)  # fmt: skip
    run = run_services.run_start(experiment=experiment)
    assert engine.prepare_run(run.pk)
    engine.run_detector(run.pk, "siamese-unet")
    engine.finish_run(run.pk)
    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED, run.error
    assert set(Result.objects.filter(run=run).values_list("weights", flat=True)) == {checkpoint.provenance}
    assert run.environment["weights_sha256"]["siamese-unet"] == checkpoint.sha256
    trained_on = checkpoint.config["trained_on"]
    assert set(trained_on["train"]) | set(trained_on["val"]) == {p.fingerprint for p in dataset.pairs.all()}
    assert not set(trained_on["train"]) & set(trained_on["val"])
    assert run.leaderboard["detectors"][0]["trained_on_pairs"] == 16  # every scored pair was a training pair
    client = Client()
    client.force_login(user)
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "scored on 16 pairs it was trained on" in page and "64 px (override)" in page
    assert "Workers</dt>" in page and "nothing computed in this run" not in page
    board = leaderboard_json(run)
    assert board["rows"][0]["trained_on_pairs"] == 16 and board["rows"][0]["input_size_source"] == "override"


@pytest.mark.django_db
def test_training_refuses_a_classical_detector_and_writes_nothing(user):
    call_command("make_benchmark", "--name", "tiny", "--pairs", "4", "--size", "48", "--user", user.username,
                 stdout=io.StringIO())  # fmt: skip
    with pytest.raises(CommandError, match="not a learned detector"):
        call_command("train_detector", "absdiff", "--dataset", "tiny", "--user", user.username, stdout=io.StringIO())
    assert not TrainingJob.objects.exists()


def test_no_change_categories_are_part_of_the_benchmark():
    assert set(NO_CHANGE_CATEGORIES) <= set(CATEGORIES)
