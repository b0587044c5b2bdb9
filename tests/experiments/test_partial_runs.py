"""One detector failing fails only its column: the run ends `partial` with the others' results and
leaderboard rows, the failed detector is a row with its reason, and retry runs only it again."""

import pytest
from django.urls import reverse

from experiments import lifecycle
from experiments.errors import InvalidState
from experiments.models import Result, RunState
from experiments.reporting import leaderboard
from experiments.runs import engine, tasks
from experiments.runs import services as run_services
from tests.api.conftest import token_client
from tests.factories import make_dataset

BROKEN = "broken-diff"
BREAKS = {"now": True}


@pytest.fixture
def broken_detector(scratch_registry):
    """A test-only classical detector that raises while `BREAKS["now"]` (registered for this test only)."""
    from inference.detectors.base import ClassicalDetector
    from inference.registry import register_detector

    def predict(a, b):
        if BREAKS["now"]:
            raise RuntimeError("the broken detector broke")
        return (abs(a.astype("float32") - b.astype("float32")).mean(axis=2) / 255).astype("float32")

    @register_detector(BROKEN, family="classical", learned=False, relative_cost=1, description="fails (test)")
    def build(*, name, weights=None, device=None):
        return ClassicalDetector(name, predict)

    BREAKS["now"] = True
    yield BROKEN
    BREAKS["now"] = True


@pytest.fixture
def start(user, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)])

    def make(detectors):
        experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=detectors)
        return run_services.run_start(experiment=experiment)

    return make


def execute(run):
    """As the workers run it: prepare, each detector's task (its wrapper included), finish."""
    assert engine.prepare_run(run.pk)
    for name in run.experiment.detectors:
        tasks.run_detector.apply(args=[run.pk, name])
    tasks.finish_run.apply(args=[run.pk])
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_one_failing_detector_ends_the_run_partial_and_keeps_the_others(start, broken_detector, user, client):
    run = execute(start(["absdiff", BROKEN]))
    assert run.state == RunState.PARTIAL and run.is_finished and run.finished_at is not None
    assert f"{BROKEN}: RuntimeError: the broken detector broke" in run.error
    assert run.progress["detectors"][BROKEN]["failed"] == "RuntimeError: the broken detector broke"
    assert Result.objects.filter(run=run, detector="absdiff").count() == 3
    rows = {row["detector"]: row for row in run.leaderboard["detectors"]}
    assert rows[BROKEN] == {"detector": BROKEN, "failed": "RuntimeError: the broken detector broke"}
    assert rows["absdiff"]["n_pairs"] == 3 and "failed" not in rows["absdiff"]

    records = leaderboard.leaderboard_records(run)
    assert [r["detector"] for r in records] == ["absdiff", BROKEN]  # ranked ones first, the failed one last
    assert records[0]["rank"] == 1 and records[0]["failed"] is None and records[0]["pooled_iou"] is not None
    assert records[1]["rank"] is None and records[1]["pooled_iou"] is None and "broke" in records[1]["failed"]
    assert "the broken detector broke" in leaderboard.leaderboard_csv(run)
    text = leaderboard.leaderboard_text(run)  # the command line's table
    assert BROKEN in text and "failed: RuntimeError" in text

    client.force_login(user)
    page = client.get(reverse("experiments:run_detail", args=[run.pk])).content.decode()
    assert 'id="partial-note"' in page and "failed: RuntimeError: the broken detector broke" in page
    assert 'class="chip state-partial"' in page

    api = token_client(user)
    assert api.get(f"/api/v1/runs/{run.pk}/").json()["state"] == "partial"
    board = api.get(f"/api/v1/runs/{run.pk}/leaderboard/")
    assert board.status_code == 200, board.content
    by_name = {row["detector"]: row for row in board.json()["rows"]}
    assert by_name[BROKEN]["failed"] == "RuntimeError: the broken detector broke"
    assert by_name["absdiff"]["failed"] is None and by_name["absdiff"]["n_pairs"] == 3
    assert api.get(f"/api/v1/runs/{run.pk}/leaderboard/?format=csv").status_code == 200


@pytest.mark.django_db
def test_retry_of_a_partial_run_runs_only_the_failed_detector(start, broken_detector, monkeypatch):
    run = execute(start(["absdiff", BROKEN]))
    assert run.state == RunState.PARTIAL
    kept = dict(Result.objects.filter(run=run, detector="absdiff").values_list("pk", "heatmap_key"))
    computed = []
    original = engine.process_batch
    monkeypatch.setattr(
        engine, "process_batch", lambda run, slot, *a, **k: (computed.append(slot.name), original(run, slot, *a, **k))
    )
    BREAKS["now"] = False
    run = run_services.run_retry(run=run)
    assert run.state == RunState.QUEUED and run.error == "" and "failed" not in run.progress["detectors"][BROKEN]
    run = execute(run)
    assert run.state == RunState.SUCCEEDED, run.error
    assert set(computed) == {BROKEN}  # absdiff's results were kept, not computed again
    assert dict(Result.objects.filter(run=run, detector="absdiff").values_list("pk", "heatmap_key")) == kept
    assert Result.objects.filter(run=run, detector=BROKEN).count() == 3
    assert all("failed" not in row for row in run.leaderboard["detectors"])


@pytest.mark.django_db
def test_when_every_detector_fails_the_run_fails(start, broken_detector):
    run = execute(start([BROKEN]))
    assert run.state == RunState.FAILED and run.leaderboard in (None, {})
    assert f"{BROKEN}: RuntimeError: the broken detector broke" in run.error
    assert run_services.run_retry(run=run).state == RunState.QUEUED  # a failed run can be retried as before


@pytest.mark.django_db
def test_an_unloadable_learned_detector_fails_only_its_column(start, tmp_path, monkeypatch):
    """siamese-resnet50 without a checkpoint or an ImageNet file (weights chosen "auto" and so refused
    up front; here it is forced, as if the file vanished after the run was queued)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr("experiments.runs.services.check_available", lambda *a, **k: None)
    run = execute(start(["absdiff", "siamese-resnet50"]))
    assert run.state == RunState.PARTIAL
    assert "WeightsUnavailable" in run.progress["detectors"]["siamese-resnet50"]["failed"]
    assert Result.objects.filter(run=run, detector="absdiff").count() == 3


@pytest.mark.django_db
def test_a_cancel_request_still_cancels_the_whole_run(start, broken_detector):
    from experiments.models import Run

    run = start(["absdiff", BROKEN])
    assert engine.prepare_run(run.pk)
    Run.objects.filter(pk=run.pk).update(cancel_requested=True)
    tasks.run_detector.apply(args=[run.pk, BROKEN])
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED


@pytest.mark.django_db
def test_partial_is_finished_and_only_goes_back_to_queued(start, broken_detector):
    run = execute(start(["absdiff", BROKEN]))
    with pytest.raises(InvalidState):
        lifecycle.run_transition(run.pk, RunState.RUNNING)
    with pytest.raises(InvalidState):
        run_services.run_cancel(run=run)
    assert lifecycle.run_transition(run.pk, RunState.QUEUED).state == RunState.QUEUED
