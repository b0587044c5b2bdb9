"""The detector plan: a name resolved once, per kind, into one frozen record, and the engine runs
what the plan says (its weights and input size), not what the name would resolve to again."""

import dataclasses

import pytest
import torch

from experiments.checkpoints import services as checkpoint_services
from experiments.errors import ServiceError
from experiments.models import ModelCheckpoint, PredictionSet, UploadedModel
from experiments.plans.kinds import detector_names, plan, plans_for, run_plan
from experiments.plans.record import DetectorPlan
from experiments.runs import detector_slot, model_cache
from experiments.runs import services as run_services
from inference import create_detector
from inference.registry import get_spec, list_detectors
from inference.weights import file_sha256, save_checkpoint
from tests.factories import make_dataset

UNET = "siamese-unet"
MOBILENET = "siamese-mobilenetv3"


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    model_cache.clear()


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return tmp_path / "torch-home" / "hub" / "checkpoints"


def unet_checkpoint(owner, folder, *, trained_at=64, seed=0, public=False) -> ModelCheckpoint:
    torch.manual_seed(seed)
    detector = create_detector(UNET, weights=None, device="cpu", input_size=trained_at)
    path = folder / f"unet-{seed}.pt"
    sha256 = save_checkpoint(path, detector.model.state_dict(), {"detector": UNET, "input_size": trained_at})
    return checkpoint_services.checkpoint_register(
        owner=owner, detector=UNET, dataset=None, data=path.read_bytes(), sha256=sha256, epochs=1, val_metrics={},
        config={}, is_public=public,
    )  # fmt: skip


@pytest.fixture
def dataset(user, make_pair_bytes):
    return make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(2)])


def experiment_of(owner, dataset, detectors, **choices):
    return run_services.experiment_create(owner=owner, dataset=dataset, name="plan", detectors=detectors, **choices)


def uploaded_model(owner, name="siam", state=UploadedModel.State.READY, input_size=64, reason="") -> UploadedModel:
    return UploadedModel.objects.create(
        owner=owner, name=name, file_key=f"models/{name}.onnx", sha256="ab" * 32, size_bytes=10, input_size=input_size,
        mean=[0.5] * 3, std=[0.5] * 3, inputs="two", output="logits", state=state, reason=reason, probe={"probe_ms": 3.5, "params": 7},
    )  # fmt: skip


# --------------------------------------------------------------------------- registered detectors
@pytest.mark.django_db
def test_a_classical_detector_plans_no_weights_on_the_cpu_queue(user):
    planned = plan(user, "absdiff")
    assert (planned.kind, planned.family, planned.learned, planned.brought_in) == (
        "registered",
        "classical",
        False,
        False,
    )
    assert (planned.weights.source, planned.weights.ref, planned.weights.identity(seed=3)) == (
        "none",
        "none",
        "none:None",
    )
    assert (planned.queue, planned.availability.available, planned.input_size, planned.members) == (
        "cpu",
        True,
        None,
        (),
    )
    assert (planned.device, planned.precision) == (None, None)  # chosen by the worker that runs it


@pytest.mark.django_db
def test_a_plan_is_frozen(user):
    planned = plan(user, "absdiff")
    with pytest.raises(dataclasses.FrozenInstanceError):
        planned.queue = "gpu"
    with pytest.raises(dataclasses.FrozenInstanceError):
        planned.weights.source = "random"


@pytest.mark.parametrize("name", [n for n in list_detectors() if get_spec(n).family != "ensemble"])
@pytest.mark.django_db
def test_every_registered_plan_carries_the_registry_facts_and_its_queue(name):
    spec, planned = get_spec(name), plan(None, name)
    assert planned.as_dict() == {**spec.facts(), "queue": "gpu" if spec.learned else "cpu"}


@pytest.mark.django_db
def test_an_unknown_name_is_a_key_error_listing_the_known_ones(user):
    with pytest.raises(KeyError) as caught:
        plan(user, "no-such-detector")
    assert "no-such-detector" in str(caught.value) and UNET in str(caught.value)


@pytest.mark.django_db
def test_auto_takes_the_owners_checkpoint_and_the_worker_loads_its_file_at_its_size(user, tmp_path, empty_torch_home):
    checkpoint = unet_checkpoint(user, tmp_path, trained_at=48)
    planned = plan(user, UNET)
    assert (planned.weights.source, planned.weights.ref) == ("own checkpoint", checkpoint.provenance)
    assert (planned.weights.checkpoint, planned.weights.load, planned.availability.available) == (
        checkpoint,
        None,
        True,
    )
    registry_size = get_spec(UNET).input_size
    assert (planned.input_size, planned.input_size_source, planned.queue) == (registry_size, "registry", "gpu")

    on_worker = plan(user, UNET, on_worker=True)
    assert file_sha256(on_worker.weights.load) == checkpoint.sha256  # a local, hash-checked copy
    assert (on_worker.input_size, on_worker.input_size_source) == (48, "checkpoint")
    assert (on_worker.device, on_worker.precision) == ("cpu", "fp32")


@pytest.mark.django_db
def test_auto_falls_back_to_a_public_checkpoint(user, other_user, tmp_path, empty_torch_home):
    shipped = unet_checkpoint(None, tmp_path, public=True)
    assert (plan(other_user, UNET).weights.source, plan(other_user, UNET).weights.checkpoint) == (
        "public checkpoint", shipped,
    )  # fmt: skip
    own = unet_checkpoint(user, tmp_path, seed=1)
    assert plan(user, UNET).weights.checkpoint == own  # the owner's own wins over the shipped one


@pytest.mark.django_db
def test_auto_without_a_checkpoint_is_imagenet_when_its_file_is_cached_else_unavailable(user, empty_torch_home):
    bare = plan(user, MOBILENET)
    assert (bare.weights.source, bare.weights.ref, bare.availability.available) == ("unavailable", "auto", False)
    assert get_spec(MOBILENET).imagenet_files[0] in bare.availability.reason
    assert "python manage.py train_detector siamese-mobilenetv3" in bare.availability.reason

    empty_torch_home.mkdir(parents=True)
    (empty_torch_home / get_spec(MOBILENET).imagenet_files[0]).write_bytes(b"x")
    imagenet = plan(user, MOBILENET)
    assert (imagenet.weights.source, imagenet.weights.ref, imagenet.availability.available) == (
        "imagenet",
        "auto",
        True,
    )
    assert imagenet.weights.identity(seed=0) is None  # only loading tells which file's hash


@pytest.mark.django_db
def test_the_experiments_choice_and_override_are_planned(user, dataset, tmp_path, empty_torch_home):
    experiment = experiment_of(user, dataset, [UNET], detector_weights={UNET: "random"}, input_size=40, scaling="tile")
    planned = run_plan(experiment, UNET)
    assert (planned.weights.source, planned.weights.load, planned.weights.identity(seed=5)) == (
        "random", None, "random:seed=5",
    )  # fmt: skip
    assert (planned.input_size, planned.input_size_source, planned.scaling) == (40, "override", "tile")


@pytest.mark.django_db
def test_a_pinned_checkpoint_the_owner_cannot_see_is_unavailable_and_refused_on_the_worker(
    user, other_user, dataset, tmp_path
):
    theirs = unet_checkpoint(other_user, tmp_path)
    experiment = experiment_of(user, dataset, [UNET], detector_weights={UNET: theirs.provenance})
    planned = plan(user, UNET, experiment=experiment)
    assert (planned.weights.source, planned.availability.available) == ("unavailable", False)
    assert theirs.sha256[:12] in planned.availability.reason
    with pytest.raises(ServiceError, match="not available to you"):
        run_plan(experiment, UNET)


# --------------------------------------------------------------------------- brought-in detectors
@pytest.mark.django_db
def test_a_ready_onnx_model_is_planned_from_its_upload(user):
    model = uploaded_model(user)
    planned = plan(user, "onnx:siam")
    assert (planned.kind, planned.family, planned.learned, planned.row) == ("onnx", "onnx", True, model)
    assert (planned.weights.source, planned.weights.ref) == ("uploaded model", f"onnx:{model.sha256}")
    assert (planned.input_size, planned.input_size_source, planned.queue) == (64, "model", "gpu")
    assert (planned.relative_cost, planned.params, planned.weights.listed, planned.brought_in) == (
        3.5,
        7,
        "brought in",
        True,
    )
    assert planned.builder() is not None  # not a registered detector: built from its file


@pytest.mark.django_db
def test_an_onnx_model_not_ready_or_not_the_owners_is_refused_saying_why(user, other_user):
    uploaded_model(user, state=UploadedModel.State.REJECTED, reason="output has the wrong shape")
    with pytest.raises(KeyError, match="rejected, not ready: output has the wrong shape"):
        plan(user, "onnx:siam")
    uploaded_model(other_user, name="theirs")
    with pytest.raises(KeyError, match="no uploaded model called 'theirs'"):
        plan(user, "onnx:theirs")
    assert "onnx:theirs" in plans_for(other_user) and "onnx:theirs" not in plans_for(user)


@pytest.mark.django_db
def test_predictions_are_planned_for_their_own_dataset_only(user, dataset, make_pair_bytes):
    other = make_dataset(user, name="other", pairs=[("q", *make_pair_bytes(seed=9))])
    PredictionSet.objects.create(owner=user, dataset=dataset, name="bit", kind="mask", archive_sha256="cd" * 32)
    planned = plan(user, "external:bit", dataset=dataset)
    assert (planned.kind, planned.learned, planned.queue, planned.made_elsewhere) == ("external", False, "cpu", True)
    assert (planned.weights.ref, planned.weights.listed) == (f"external:{'cd' * 32}", "brought in")
    with pytest.raises(KeyError, match="uploaded for dataset 'ds', not 'other'"):
        plan(user, "external:bit", dataset=other)
    assert "external:bit" in plans_for(user, dataset) and "external:bit" not in plans_for(user, other)
    PredictionSet.objects.create(owner=user, dataset=other, name="bit", kind="mask", archive_sha256="ef" * 32)
    assert detector_names(user) == sorted(plans_for(user))  # every dataset's, each name once


# --------------------------------------------------------------------------- the ensemble
@pytest.mark.django_db
def test_the_ensemble_plans_each_member_as_it_would_run_alone(user, dataset, tmp_path, empty_torch_home):
    alone = plan(user, "ensemble")
    assert [m.name for m in alone.members] == ["absdiff", "ssim"] and alone.queue == "cpu"

    checkpoint = unet_checkpoint(user, tmp_path)
    experiment = experiment_of(user, dataset, ["ensemble", UNET], input_size=32)
    planned = run_plan(experiment, "ensemble")
    assert planned.kind == "ensemble" and planned.queue == "gpu"
    assert [m.name for m in planned.members] == ["absdiff", "ssim", UNET]
    assert all(isinstance(member, DetectorPlan) for member in planned.members)
    unet = planned.members[-1]
    assert unet == run_plan(experiment, UNET)  # the same plan as the detector alone in the run
    assert (unet.weights.ref, unet.input_size, unet.input_size_source) == (checkpoint.provenance, 32, "override")
    assert unet.build_options() == {"name": UNET, "weights": unet.weights.load, "input_size": 32}

    untrained = experiment_of(user, dataset, ["ensemble", UNET], detector_weights={UNET: "random"})
    assert [m.name for m in run_plan(untrained, "ensemble").members] == ["absdiff", "ssim"]


# --------------------------------------------------------------------------- the engine reads the plan
@pytest.mark.django_db
def test_the_slot_loads_the_plans_weights_at_the_plans_size(user, dataset, tmp_path, empty_torch_home):
    experiment = experiment_of(user, dataset, [UNET], detector_weights={UNET: "random"})
    run = run_services.run_start(experiment=experiment)
    planned = run_plan(run, UNET)
    assert (planned.input_size, planned.weights.source) == (get_spec(UNET).input_size, "random")

    checkpoint = unet_checkpoint(user, tmp_path, seed=2)
    path = plan(user, UNET, on_worker=True).weights.load
    # A plan that differs from what the name resolves to now: the slot must run the plan, not the name.
    changed = dataclasses.replace(
        planned, input_size=48, weights=dataclasses.replace(planned.weights, load=path, ref=checkpoint.provenance)
    )
    slot = detector_slot.DetectorSlot(run, changed)
    info = slot.load().info
    assert (info.input_size, info.weights, info.weights_sha256) == (48, checkpoint.provenance, checkpoint.sha256)
    assert slot.info["input_size"] == 48 and slot.weights_ref == f"checkpoint:{checkpoint.sha256}:{checkpoint.sha256}"
    assert slot.computation(None)["input_size"] == 48
