"""Delete pages: GET confirms and says what goes, POST deletes through the services, only the owner."""

import hashlib

import pytest
from django.urls import reverse

from experiments import storage
from experiments.checkpoints import services as checkpoint_services
from experiments.models import Dataset, Experiment, ImagePair, ModelCheckpoint, Result, Run, TrainingJob
from experiments.runs import result_pictures
from experiments.runs import services as run_services
from tests.factories import make_dataset, run_in_process

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(user, make_pair_bytes, no_queue):
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff", "ssim"])
    runs = [run_in_process(run_services.run_start(experiment=experiment)) for _ in range(2)]
    assert [run.state for run in runs] == ["succeeded", "succeeded"]
    for run in runs:  # the pairs' consensus maps, drawn as viewing the pairs draws them: the runs' own files
        for pair in dataset.pairs.all():
            result_pictures.read(result_pictures.consensus_key(run.pk, pair.pk))
    return {"dataset": dataset, "experiment": experiment, "runs": runs}


def logged_in(client, user):
    client.force_login(user)
    return client


def summary(response) -> str:
    html = response.content.decode()
    start = html.index('id="delete-summary"')
    return " ".join(html[start : html.index("</section>", start)].split())


def test_the_run_page_confirms_with_counts_and_get_deletes_nothing(client, user, world):
    run = world["runs"][0]
    files = storage.list_all_keys(storage.run_key(run.pk))
    assert files  # the consensus maps
    response = logged_in(client, user).get(reverse("experiments:run_delete", args=[run.pk]))
    assert response.status_code == 200
    text = summary(response)
    assert f"<strong>{3 * 2}</strong> results" in text
    assert f"<strong>{len(files)}</strong> stored files" in text
    assert Run.objects.filter(pk=run.pk).exists()
    assert storage.list_all_keys(storage.run_key(run.pk)) == files
    assert 'method="post"' in response.content.decode() and "csrfmiddlewaretoken" in response.content.decode()


def test_posting_deletes_the_run_its_results_and_files_only(client, user, world, django_capture_on_commit_callbacks):
    run, other_run = world["runs"]
    other_files = storage.list_all_keys(storage.run_key(other_run.pk))
    with django_capture_on_commit_callbacks(execute=True):
        response = logged_in(client, user).post(reverse("experiments:run_delete", args=[run.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("experiments:experiment_detail", args=[world["experiment"].pk])
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not Result.objects.filter(run_id=run.pk).exists()
    assert storage.list_all_keys(storage.run_key(run.pk)) == []
    assert storage.list_all_keys(storage.run_key(other_run.pk)) == other_files  # the sibling run is untouched
    assert Experiment.objects.filter(pk=world["experiment"].pk).exists()


def test_an_active_run_is_not_deleted(client, user, world):
    run = run_services.run_start(experiment=world["experiment"])  # queued (no broker here)
    c = logged_in(client, user)
    page = c.get(reverse("experiments:run_delete", args=[run.pk]))
    assert 'id="delete-blocked"' in page.content.decode()
    response = c.post(reverse("experiments:run_delete", args=[run.pk]))
    assert response.status_code == 409
    assert "cancel it before deleting" in response.content.decode()
    assert Run.objects.filter(pk=run.pk).exists()


def test_the_experiment_page_counts_runs_results_and_files_then_deletes(
    client, user, world, django_capture_on_commit_callbacks
):
    experiment = world["experiment"]
    files = sum(len(storage.list_all_keys(storage.run_key(r.pk))) for r in world["runs"])
    c = logged_in(client, user)
    text = summary(c.get(reverse("experiments:experiment_delete", args=[experiment.pk])))
    assert "<strong>2</strong> runs" in text and "<strong>12</strong> results" in text
    assert f"<strong>{files}</strong> stored files" in text
    with django_capture_on_commit_callbacks(execute=True):
        response = c.post(reverse("experiments:experiment_delete", args=[experiment.pk]))
    assert response.status_code == 302
    assert not Experiment.objects.filter(pk=experiment.pk).exists()
    assert not Run.objects.filter(pk__in=[r.pk for r in world["runs"]]).exists()
    assert all(storage.list_all_keys(storage.run_key(r.pk)) == [] for r in world["runs"])
    assert Dataset.objects.filter(pk=world["dataset"].pk).exists()


def test_a_dataset_used_by_an_experiment_is_refused_then_deleted_once_free(
    client, user, world, django_capture_on_commit_callbacks
):
    dataset = world["dataset"]
    c = logged_in(client, user)
    page = c.get(reverse("experiments:dataset_delete", args=[dataset.pk]))
    text = summary(page)
    assert "<strong>3</strong> image pairs" in text
    assert f"<strong>{len(storage.list_all_keys(storage.dataset_key(dataset.pk)))}</strong> stored files" in text
    assert "1 experiment uses it" in text
    refused = c.post(reverse("experiments:dataset_delete", args=[dataset.pk]))
    assert refused.status_code == 409 and "Delete the experiments" in refused.content.decode()
    assert ImagePair.objects.filter(dataset=dataset).count() == 3

    run_services.experiment_delete(experiment=world["experiment"])
    with django_capture_on_commit_callbacks(execute=True):
        response = c.post(reverse("experiments:dataset_delete", args=[dataset.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("experiments:dataset_list")
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert storage.list_all_keys(storage.dataset_key(dataset.pk)) == []


def test_a_dataset_a_training_job_used_is_refused_with_a_message(client, user, make_pair_bytes):
    dataset = make_dataset(user, pairs=[("p0", *make_pair_bytes(seed=0))])
    TrainingJob.objects.create(owner=user, detector="siamese-unet", dataset=dataset, config={}, state="succeeded")
    c = logged_in(client, user)
    assert "1 training job trained on it" in summary(c.get(reverse("experiments:dataset_delete", args=[dataset.pk])))
    response = c.post(reverse("experiments:dataset_delete", args=[dataset.pk]))
    assert response.status_code == 409
    assert Dataset.objects.filter(pk=dataset.pk).exists()


@pytest.fixture
def checkpoint(user, world):
    data = b"not really weights, never loaded here"
    return checkpoint_services.checkpoint_register(
        owner=user, detector="siamese-unet", dataset=world["dataset"], data=data,
        sha256=hashlib.sha256(data).hexdigest(), epochs=2, val_metrics={}, config={},
    )  # fmt: skip


def test_a_checkpoint_and_its_file_are_deleted(client, user, checkpoint, django_capture_on_commit_callbacks):
    job = TrainingJob.objects.create(
        owner=user, detector="siamese-unet", dataset=checkpoint.dataset, config={}, checkpoint=checkpoint
    )
    assert storage.exists(checkpoint.file_key)
    c = logged_in(client, user)
    text = summary(c.get(reverse("experiments:checkpoint_delete", args=[checkpoint.pk])))
    assert "<strong>1</strong> stored file" in text and "1 training job that produced it loses the link" in text
    with django_capture_on_commit_callbacks(execute=True):
        response = c.post(reverse("experiments:checkpoint_delete", args=[checkpoint.pk]))
    assert response.status_code == 302
    assert not ModelCheckpoint.objects.filter(pk=checkpoint.pk).exists()
    assert not storage.exists(checkpoint.file_key)
    job.refresh_from_db()
    assert job.checkpoint_id is None


def test_a_checkpoint_a_queued_run_uses_is_kept(client, user, world, checkpoint):
    experiment = world["experiment"]
    Experiment.objects.filter(pk=experiment.pk).update(detector_weights={"absdiff": checkpoint.provenance})
    run_services.run_start(experiment=experiment)
    response = logged_in(client, user).post(reverse("experiments:checkpoint_delete", args=[checkpoint.pk]))
    assert response.status_code == 409
    assert ModelCheckpoint.objects.filter(pk=checkpoint.pk).exists() and storage.exists(checkpoint.file_key)


@pytest.mark.parametrize("route", ["dataset", "experiment", "run", "checkpoint"])
def test_another_user_gets_404_and_staff_may_look(client, world, checkpoint, other_user, staff_user, route):
    pk = {"dataset": world["dataset"].pk, "experiment": world["experiment"].pk, "run": world["runs"][0].pk,
          "checkpoint": checkpoint.pk}[route]  # fmt: skip
    url = reverse(f"experiments:{route}_delete", args=[pk])
    c = logged_in(client, other_user)
    assert c.get(url).status_code == 404
    assert c.post(url).status_code == 404
    assert Dataset.objects.filter(pk=world["dataset"].pk).exists()
    assert Run.objects.filter(pk=world["runs"][0].pk).exists()
    assert ModelCheckpoint.objects.filter(pk=checkpoint.pk).exists()
    assert logged_in(client, staff_user).get(url).status_code == 200  # staff see all (experiments/visibility.py)


def test_delete_needs_csrf_and_a_login(client, user, world):
    from django.test import Client

    run = world["runs"][0]
    url = reverse("experiments:run_delete", args=[run.pk])
    anonymous = client.post(url)
    assert anonymous.status_code == 302 and "login" in anonymous["Location"]
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(url).status_code == 403
    assert Run.objects.filter(pk=run.pk).exists()
    assert strict.put(url).status_code in (403, 405)
