"""Every registered detector runs, or says plainly why not: one availability rule for the
new-experiment page, the API's detector list and the services (so the CLI too)."""

import pytest
from django.urls import reverse

from experiments.errors import ServiceError
from experiments.models import ModelCheckpoint
from experiments.plans.kinds import plan
from experiments.runs import services as run_services
from inference.registry import get_spec
from tests.api.conftest import token_client
from tests.factories import make_dataset

RESNET_FILE = get_spec("siamese-resnet50").imagenet_files[0]


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    """A fresh install: nothing in the torch cache."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home / "hub" / "checkpoints"


@pytest.fixture
def dataset(user, make_pair_bytes):
    return make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(2)])


@pytest.mark.django_db
def test_a_learned_detector_without_weights_is_unavailable_with_the_reason_and_the_fix(user, empty_torch_home):
    availability = plan(user, "siamese-resnet50").availability
    assert not availability.available
    assert RESNET_FILE in availability.reason and str(empty_torch_home) in availability.reason
    assert "python manage.py train_detector siamese-resnet50 --dataset" in availability.reason
    scratch = plan(user, "siamese-unet").availability  # no ImageNet backbone for this architecture
    assert not scratch.available and "train_detector siamese-unet" in scratch.reason
    for name in ("absdiff", "ssim", "ensemble"):
        assert plan(user, name).availability.available
        assert plan(user, name).availability.reason == ""


@pytest.mark.django_db
def test_an_imagenet_file_in_the_torch_cache_makes_it_available(user, empty_torch_home):
    empty_torch_home.mkdir(parents=True)
    (empty_torch_home / RESNET_FILE).write_bytes(b"not read: found by name")
    assert plan(user, "siamese-resnet50").availability.available
    assert not plan(user, "siamese-vgg16").availability.available


@pytest.mark.django_db
def test_a_checkpoint_the_user_can_see_makes_it_available(user, other_user, empty_torch_home):
    ModelCheckpoint.objects.create(
        owner=user, detector="siamese-resnet50", file_key="checkpoints/x.pt", sha256="a" * 64
    )
    assert plan(user, "siamese-resnet50").availability.available
    assert not plan(other_user, "siamese-resnet50").availability.available  # not theirs, not public
    ModelCheckpoint.objects.create(
        detector="siamese-vgg16", file_key="checkpoints/y.pt", sha256="b" * 64, is_public=True
    )
    assert plan(other_user, "siamese-vgg16").availability.available


@pytest.mark.django_db
def test_the_services_refuse_auto_for_an_unavailable_detector_but_allow_explicit_weights(
    user, dataset, empty_torch_home
):
    with pytest.raises(ServiceError) as refused:
        run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff", "siamese-resnet50"])
    assert refused.value.status == 400 and refused.value.field == "detectors"
    assert "siamese-resnet50 is unavailable" in refused.value.message and RESNET_FILE in refused.value.message
    experiment = run_services.experiment_create(
        owner=user,
        dataset=dataset,
        name="e",
        detectors=["absdiff", "siamese-resnet50"],
        detector_weights={"siamese-resnet50": "random"},
    )
    assert experiment.detector_weights == {"siamese-resnet50": "random"}


@pytest.mark.django_db
def test_the_api_lists_availability_and_refuses_auto_with_a_400_naming_the_reason(user, dataset, empty_torch_home):
    api = token_client(user)
    detectors = {d["name"]: d for d in api.get("/api/v1/detectors/").json()}
    assert detectors["absdiff"]["available"] and detectors["absdiff"]["unavailable_reason"] == ""
    resnet = detectors["siamese-resnet50"]
    assert not resnet["available"] and RESNET_FILE in resnet["unavailable_reason"]
    assert resnet["weights"] == "untrained" and resnet["weights_available"] is False  # existing fields kept
    response = api.post(
        "/api/v1/experiments/",
        {"dataset": dataset.pk, "detectors": ["absdiff", "siamese-resnet50"]},
        format="json",
    )
    assert response.status_code == 422, response.content
    assert "siamese-resnet50 is unavailable" in response.content.decode()
    assert RESNET_FILE in response.content.decode()


@pytest.mark.django_db
def test_the_new_experiment_page_shows_the_reason_and_a_disabled_checkbox(client, user, dataset, empty_torch_home):
    client.force_login(user)
    html = client.get(reverse("experiments:experiment_create")).content.decode()
    row = html.split('data-detector="siamese-resnet50"', 1)[1].split("</tr>", 1)[0]
    assert "unavailable: no trained weights and no ImageNet backbone" in row and RESNET_FILE in row
    checkbox = row.split("<input", 1)[1].split(">", 1)[0]
    assert 'id="det-siamese-resnet50"' in checkbox and " disabled" in checkbox
    absdiff_row = html.split('data-detector="absdiff"', 1)[1].split("</tr>", 1)[0]
    assert " disabled" not in absdiff_row.split("<input", 1)[1].split(">", 1)[0] and "unavailable" not in absdiff_row
    # posted anyway with "auto": refused with the reason, nothing created
    response = client.post(
        reverse("experiments:experiment_create"),
        {"dataset": dataset.pk, "detectors": ["siamese-resnet50"], "threshold": 0.5, "seed": 0},
    )
    assert response.status_code == 400 and "siamese-resnet50 is unavailable" in response.content.decode()


@pytest.mark.django_db
def test_run_experiment_refuses_an_unavailable_detector_with_the_reason(user, dataset, empty_torch_home):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError) as refused:
        call_command("run_experiment", "--dataset", str(dataset.pk), "--detectors", "absdiff,siamese-resnet50")
    assert "siamese-resnet50 is unavailable" in str(refused.value) and "train_detector" in str(refused.value)
    assert not dataset.experiments.exists()
