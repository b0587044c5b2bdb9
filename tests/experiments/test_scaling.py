"""Resize or tile (`Experiment.scaling`): one rule on every interface, in the cache key and the run's record."""

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from experiments.errors import ServiceError
from experiments.models import Experiment, Run
from experiments.pages.forms import ExperimentForm
from experiments.plans.kinds import run_plan
from experiments.runs import detector_slot, model_cache
from experiments.runs import services as run_services
from experiments.runs.validation import check_scaling
from tests.api.conftest import token_client
from tests.api.test_datasets import error_of
from tests.factories import make_dataset, run_in_process

pytestmark = pytest.mark.django_db
UNET = "siamese-unet"


@pytest.fixture
def dataset(user, make_pair_bytes):
    return make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(size=80, seed=i)) for i in range(2)])


def start(owner, dataset, detectors=("absdiff",), **settings) -> Run:
    return run_services.experiment_start(owner=owner, dataset=dataset, name="e", detectors=list(detectors), **settings)


def test_the_rule_accepts_the_three_choices_and_names_them_when_it_refuses():
    assert [check_scaling(v) for v in ("auto", "resize", "tile", None, "")] == [
        "auto",
        "resize",
        "tile",
        "auto",
        "auto",
    ]
    with pytest.raises(ServiceError, match="auto, resize, tile") as refused:
        check_scaling("zoom")
    assert refused.value.field == "scaling"


def test_a_run_keeps_its_scaling_and_a_clone_too(user, dataset, no_queue):
    assert start(user, dataset).experiment.scaling == "auto"
    run = start(user, dataset, scaling="tile")
    assert run.experiment.scaling == "tile" and run.experiment.settings_record()["scaling"] == "tile"
    assert run_services.run_clone(run=run).experiment.scaling == "tile"


def test_an_unknown_scaling_is_refused_and_leaves_nothing(user, dataset, no_queue):
    with pytest.raises(ServiceError, match="Unknown scaling 'zoom'"):
        start(user, dataset, scaling="zoom")
    assert not Experiment.objects.exists() and not Run.objects.exists()


# --------------------------------------------------------------------------- API, page, command
def test_the_api_takes_scaling_and_shows_it(user, dataset, no_queue):
    api = token_client(user)
    body = {"dataset": dataset.pk, "detectors": ["absdiff"]}
    assert api.post("/api/v1/experiments/", body, format="json").json()["scaling"] == "auto"
    created = api.post("/api/v1/experiments/", {**body, "scaling": "resize"}, format="json")
    assert created.status_code == 201 and created.json()["scaling"] == "resize"
    assert api.get(f"/api/v1/experiments/{created.json()['id']}/").json()["scaling"] == "resize"


def test_the_api_refuses_an_unknown_scaling_with_the_allowed_values(user, dataset, no_queue):
    response = token_client(user).post(
        "/api/v1/experiments/", {"dataset": dataset.pk, "detectors": ["absdiff"], "scaling": "zoom"}, format="json"
    )
    assert response.status_code == 400
    message = error_of(response)["fields"]["scaling"][0]
    assert "zoom" in message and "auto, resize, tile" in message
    assert not Experiment.objects.exists()


def test_the_schema_lists_the_scaling_choices(user):
    components = token_client(user).get("/api/schema/?format=json").json()["components"]["schemas"]
    for name in ("ExperimentInputRequest", "ExperimentOutput"):
        scaling = components[name]["properties"]["scaling"]
        (ref,) = [part["$ref"] for part in scaling.get("allOf", [scaling]) if "$ref" in part]
        assert components[ref.rsplit("/", 1)[1]]["enum"] == ["auto", "resize", "tile"], name
    assert components["ExperimentInputRequest"]["properties"]["scaling"]["default"] == "auto"


def test_the_page_offers_scaling_and_starts_a_run_with_it(client, user, dataset, no_queue):
    client.force_login(user)
    page = client.get(reverse("experiments:experiment_create")).content.decode()
    assert 'name="scaling"' in page and 'value="tile"' in page
    post = {"dataset": dataset.pk, "detectors": ["absdiff"], "threshold": 0.5, "seed": 0}
    response = client.post(reverse("experiments:experiment_create"), {**post, "scaling": "zoom"})
    assert response.status_code == 400 and "auto, resize, tile" in response.content.decode()
    assert not Run.objects.exists()
    assert client.post(reverse("experiments:experiment_create"), {**post, "scaling": "tile"}).status_code == 302
    assert Run.objects.get().experiment.scaling == "tile"


def test_the_form_leaves_a_blank_scaling_to_the_rule(dataset):
    form = ExperimentForm(
        {"dataset": dataset.pk, "detectors": ["absdiff"], "threshold": 0.5, "seed": 0}, datasets=[dataset]
    )
    assert form.is_valid(), form.errors
    assert check_scaling(form.service_kwargs()["scaling"]) == "auto"


def test_the_command_takes_scaling_and_refuses_a_bad_one(user, dataset, no_queue):
    call_command("run_experiment", "--dataset", dataset.name, "--detectors", "absdiff", "--scaling", "tile")
    assert Experiment.objects.get().scaling == "tile"
    with pytest.raises(CommandError, match="auto, resize, tile"):
        call_command("run_experiment", "--dataset", dataset.name, "--detectors", "absdiff", "--scaling", "zoom")
    assert Experiment.objects.count() == 1


def test_a_batch_takes_scaling_and_refuses_a_bad_one(user, make_pair_bytes, no_queue):
    from experiments.models import BatchJob, Dataset
    from tests.api.test_batches import loose_files

    api = token_client(user)
    refused = api.post("/api/v1/batches/", {**loose_files(make_pair_bytes), "detectors": ["absdiff"], "scaling": "x"})
    assert refused.status_code == 400 and "auto, resize, tile" in error_of(refused)["fields"]["scaling"][0]
    assert not BatchJob.objects.exists() and not Dataset.objects.exists()
    accepted = api.post(
        "/api/v1/batches/", {**loose_files(make_pair_bytes), "detectors": ["absdiff"], "scaling": "tile"}
    )
    assert accepted.status_code == 202, accepted.content
    assert Experiment.objects.get().scaling == "tile"


# --------------------------------------------------------------------------- cache key and record
def test_the_result_cache_key_differs_between_resize_and_tile(user, dataset, no_queue):
    pair = dataset.pairs.order_by("name").first()

    def key(detector, scaling):
        run = start(
            user, dataset, [detector], scaling=scaling, detector_weights={UNET: "random"} if detector == UNET else {}
        )
        slot = detector_slot.DetectorSlot(run, run_plan(run, detector))
        return slot.computation(None)["options"].get("scaling"), slot.cache_key(pair)

    (resize_scaling, resize_key), (tile_scaling, tile_key) = key(UNET, "resize"), key(UNET, "tile")
    assert (resize_scaling, tile_scaling) == ("resize", "tile") and resize_key != tile_key
    assert key(UNET, "tile")[1] == tile_key  # the same settings: the same key
    assert key("absdiff", "resize")[1] == key("absdiff", "tile")[1]  # nothing to scale: shared results


def test_the_run_records_the_choice_and_the_detector_tiles_as_asked(user, dataset, client, no_queue):
    model_cache.clear()
    run = run_in_process(start(user, dataset, [UNET], scaling="tile", input_size=32, detector_weights={UNET: "random"}))
    assert run.state == "succeeded", run.error
    assert run.environment["settings"]["scaling"] == "tile"
    scaling = run.environment["detector_info"][UNET]["extra"]["scaling"]
    assert scaling["mode"] == "tile" and "2x the input size" in scaling["rule"]
    client.force_login(user)
    page = client.get(reverse("experiments:run_detail", args=[run.pk])).content.decode()
    assert "scaling tile" in page
    model_cache.clear()
