"""The ensemble in the platform (issue 12 item 9): its members are resolved as each would be alone in
the same run for the same user (a trained platform checkpoint joins, with its input size), it is
queued where its members run, and the run's record and leaderboard row list its members."""

import numpy as np
import pytest
import torch

from experiments import outbox
from experiments.checkpoints import services as checkpoint_services
from experiments.models import Result
from experiments.plans.kinds import plan, run_plan
from experiments.runs import detector_slot, model_cache, pair_inputs, result_pictures
from experiments.runs import services as run_services
from inference import create_detector
from inference.evaluation import pair_metrics
from inference.render import heatmap_png
from tests.factories import make_dataset, run_in_process

UNET = "siamese-unet"
send_run = outbox.send_run  # the real one: the fixture below stops runs from reaching a broker


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    model_cache.clear()


def register_unet(owner, folder):
    """A siamese-unet checkpoint trained (here: seeded weights) at 64 px, registered for `owner`."""
    from inference.weights import save_checkpoint

    torch.manual_seed(0)
    detector = create_detector(UNET, weights=None, device="cpu", input_size=64)
    path = folder / "siamese-unet-64.pt"
    sha256 = save_checkpoint(path, detector.model.state_dict(), {"detector": UNET, "input_size": 64})
    return checkpoint_services.checkpoint_register(
        owner=owner, detector=UNET, dataset=None, data=path.read_bytes(), sha256=sha256, epochs=1, val_metrics={},
        config={"input_size": 64},
    )  # fmt: skip


@pytest.fixture
def unet_checkpoint(user, tmp_path):
    return register_unet(user, tmp_path)


@pytest.fixture
def dataset_of(make_pair_bytes):
    def make(owner):
        pairs = [(f"p{i}", *make_pair_bytes(size=48, seed=i, box=(6 + i, 8, 26 + i, 30))) for i in range(2)]
        return make_dataset(owner, pairs=pairs)

    return make


def start(owner, dataset, detectors, **choices):
    experiment = run_services.experiment_create(
        owner=owner, dataset=dataset, name="ensemble", detectors=detectors, **choices
    )
    return run_services.run_start(experiment=experiment)


def queues(run) -> dict:
    """The queue of each detector task `send_run` puts in the run's canvas (nothing is sent)."""
    sent = []

    class Canvas:
        def __init__(self, *parts):
            self.parts = parts

        def apply_async(self):
            sent.append(self.parts)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(outbox, "chain", Canvas)
        send_run(run.pk)
    ((prepare, chord),) = sent
    assert prepare.options["queue"] == "cpu" and chord.body.options["queue"] == "cpu"
    return {task.args[1]: task.options["queue"] for task in chord.tasks}


def members_of(record: dict) -> dict:
    return {member["name"]: member for member in record["members"]}


def row(run, name: str) -> dict:
    return next(r for r in run.leaderboard["detectors"] if r["detector"] == name)


# --------------------------------------------------------------------------- (a) members and record
@pytest.mark.django_db
def test_a_trained_checkpoint_joins_the_ensemble_with_its_provenance_and_input_size(user, unet_checkpoint, dataset_of):
    run = run_in_process(start(user, dataset_of(user), ["ensemble"]))

    assert run.state == "succeeded", run.error
    record = run.environment["detector_info"]["ensemble"]
    assert [m["name"] for m in record["members"]] == ["absdiff", "ssim", UNET]
    unet = members_of(record)[UNET]
    assert unet["weights"] == f"checkpoint:{unet_checkpoint.sha256}" == unet_checkpoint.provenance
    assert unet["weights_sha256"] == unet_checkpoint.sha256
    assert (unet["input_size"], unet["input_size_source"]) == (64, "checkpoint")
    assert unet["flops"] and unet["device"] == "cpu" and unet["precision"] == "fp32"
    assert [m["weight"] for m in record["members"]] == pytest.approx([1 / 3] * 3)
    for classical in ("absdiff", "ssim"):
        assert members_of(record)[classical] | {"weight": None} == members_of(record)[classical] | {
            "name": classical, "weight": None, "weights": "none", "weights_sha256": None, "input_size": None,
            "input_size_source": None, "flops": None,
        }  # fmt: skip
    assert record["learned"] is True and record["weights"] == "mixed" and record["flops"] == unet["flops"]
    assert "members" not in record["extra"]  # said once, in record["members"]
    assert run.environment["weights"]["ensemble"] == "mixed"
    assert row(run, "ensemble")["members"] == record["members"]  # the leaderboard row states them too


@pytest.mark.django_db
def test_a_member_takes_the_runs_weights_choice_and_input_size_override(user, unet_checkpoint, dataset_of):
    dataset = dataset_of(user)
    override = start(user, dataset, ["ensemble", UNET], input_size=32).experiment
    (unet,) = [m for m in run_plan(override, "ensemble").members if m.learned]
    assert (unet.name, unet.weights.ref, unet.input_size, unet.input_size_source) == (
        UNET, unet_checkpoint.provenance, 32, "override"
    )  # fmt: skip
    alone_run = start(user, dataset, ["ensemble", UNET], input_size=32)
    alone = detector_slot.DetectorSlot(alone_run, run_plan(alone_run, UNET))
    assert (alone.plan.weights, alone.input_size) == (unet.weights, unet.input_size)

    random_unet = start(user, dataset, ["ensemble", UNET], detector_weights={UNET: "random"})
    assert [m.name for m in run_plan(random_unet.experiment, "ensemble").members] == ["absdiff", "ssim"]
    assert queues(random_unet) == {"ensemble": "cpu", UNET: "gpu"}  # never a member with random weights


# --------------------------------------------------------------------------- (b) the weighted mean
@pytest.mark.django_db
def test_the_ensemble_map_is_the_weighted_mean_of_its_members_maps_alone(user, unet_checkpoint, dataset_of):
    run = run_in_process(start(user, dataset_of(user), ["ensemble", "absdiff", "ssim", UNET]))
    assert run.state == "succeeded", run.error
    info = run.environment["detector_info"]
    members = info["ensemble"]["members"]
    assert [m["name"] for m in members] == ["absdiff", "ssim", UNET]
    assert members_of(info["ensemble"])[UNET]["weights"] == info[UNET]["weights"]
    assert members_of(info["ensemble"])[UNET]["input_size"] == info[UNET]["input_size"] == 64

    path = plan(user, UNET, on_worker=True).weights.load  # the same file the run loaded
    alone = {
        "absdiff": create_detector("absdiff"),
        "ssim": create_detector("ssim"),
        UNET: create_detector(UNET, weights=path, device="cpu", input_size=info[UNET]["input_size"]),
    }
    weights = np.full(3, 1 / 3)  # equal mixing weights unless the experiment chooses (it cannot yet)
    assert [m["weight"] for m in members] == pytest.approx(weights.tolist())
    threshold = run.experiment.threshold
    for pair in run.experiment.dataset.pairs.all():
        item = pair_inputs.load_pair_inputs(pair, None)
        maps = {name: detector.predict(item.a, item.b) for name, detector in alone.items()}
        for name, prob in maps.items():  # each member computed here is what the run stored for it alone
            stored = Result.objects.get(run=run, pair=pair, detector=name)
            assert stored.metrics["hist_pos"] == pair_metrics(prob, prob >= threshold, item.label)["hist_pos"]
        mean = sum(np.float32(w) * maps[m["name"]] for w, m in zip(weights, members, strict=True))
        mean = np.clip(mean, 0.0, 1.0)
        ensemble = Result.objects.get(run=run, pair=pair, detector="ensemble")
        expected = pair_metrics(mean, mean >= threshold, item.label)
        for key in ("iou", "f1", "auroc", "ap", "changed_fraction", "hist_pos", "hist_neg"):
            assert ensemble.metrics[key] == pytest.approx(expected[key]), key
        assert result_pictures.read(ensemble.heatmap_key) == heatmap_png(mean)
        assert not np.allclose(mean, (maps["absdiff"] + maps["ssim"]) / 2, atol=1e-3)  # the network counts


# --------------------------------------------------------------------------- (c), (d) queues
@pytest.mark.django_db
def test_an_ensemble_with_a_learned_member_is_queued_on_gpu(user, unet_checkpoint, dataset_of):
    run = start(user, dataset_of(user), ["ensemble", "absdiff"])
    assert queues(run) == {"ensemble": "gpu", "absdiff": "cpu"}


@pytest.mark.django_db
def test_without_a_checkpoint_the_ensemble_is_absdiff_and_ssim_on_the_cpu_queue(user, other_user, dataset_of, tmp_path):
    register_unet(other_user, tmp_path)  # another user's private checkpoint: neither joins nor moves the queue

    run = start(user, dataset_of(user), ["ensemble"])
    assert queues(run) == {"ensemble": "cpu"}
    run = run_in_process(run)
    assert run.state == "succeeded", run.error
    record = run.environment["detector_info"]["ensemble"]
    assert [(m["name"], m["weights"]) for m in record["members"]] == [("absdiff", "none"), ("ssim", "none")]
    assert row(run, "ensemble")["members"] == record["members"]
    assert record["device"] == "cpu" and record["learned"] is False

    others = start(other_user, dataset_of(other_user), ["ensemble"])
    assert queues(others) == {"ensemble": "gpu"}
