import pytest
from django.urls import reverse

from experiments.models import RunState
from experiments.runs import services as run_services
from tests.factories import make_dataset

MODELS = ["dataset", "imagepair", "experiment", "run", "result", "modelcheckpoint", "pairalignment", "trainingjob",
          "batchjob", "tasklease"]  # fmt: skip


@pytest.mark.django_db
@pytest.mark.parametrize("model", MODELS)
def test_every_admin_list_page_renders_with_search_and_filters(client, staff_user, model):
    client.force_login(staff_user)
    assert client.get(reverse(f"admin:experiments_{model}_changelist"), {"q": "x"}).status_code == 200


@pytest.mark.django_db
def test_the_cancel_action_cancels_a_queued_run(client, staff_user, user, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.dispatch", lambda model, object_id: True)
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    run = run_services.run_start(experiment=run_services.experiment_create(owner=user, dataset=dataset, name="e",
                                                                   detectors=["absdiff"]))  # fmt: skip
    client.force_login(staff_user)
    response = client.post(reverse("admin:experiments_run_changelist"),
                           {"action": "cancel_runs", "_selected_action": [run.pk]})  # fmt: skip
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    assert client.get(reverse("admin:experiments_run_change", args=[run.pk])).status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize("model", ["dataset", "experiment", "run", "imagepair", "trainingjob"])
def test_a_changelist_of_30_rows_takes_a_bounded_number_of_queries(client, staff_user, user, make_pair_bytes,
                                                                  monkeypatch, django_assert_max_num_queries, model):  # fmt: skip
    from experiments.models import TrainingJob

    monkeypatch.setattr("experiments.outbox.dispatch", lambda model, object_id: True)
    for i in range(30):
        dataset = make_dataset(user, name=f"d{i}", pairs=[(f"p{i}", *make_pair_bytes(seed=i))])
        experiment = run_services.experiment_create(owner=user, dataset=dataset, name=f"e{i}", detectors=["absdiff"])
        run_services.run_start(experiment=experiment)
        TrainingJob.objects.create(owner=user, detector="siamese-unet", dataset=dataset)
    client.force_login(staff_user)
    with django_assert_max_num_queries(15):
        assert client.get(reverse(f"admin:experiments_{model}_changelist")).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_deleting_a_dataset_in_the_admin_removes_its_files(client, staff_user, user, make_pair_bytes, media_storage):
    from experiments import storage
    from experiments.models import Dataset

    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    prefix = storage.dataset_key(dataset.pk)
    assert any(key.startswith(prefix) for key in storage.list_all_keys())
    client.force_login(staff_user)
    response = client.post(reverse("admin:experiments_dataset_changelist"),
                           {"action": "delete_selected", "_selected_action": [dataset.pk], "post": "yes"})  # fmt: skip
    assert response.status_code == 302
    assert not Dataset.objects.filter(pk=dataset.pk).exists()
    assert not any(key.startswith(prefix) for key in storage.list_all_keys())


@pytest.mark.django_db(transaction=True)
def test_a_dataset_still_in_use_is_kept_with_a_message(client, staff_user, user, make_pair_bytes, media_storage):
    from experiments import storage
    from experiments.models import Dataset

    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    client.force_login(staff_user)
    response = client.post(reverse("admin:experiments_dataset_delete", args=[dataset.pk]), {"post": "yes"},
                           follow=True)  # fmt: skip
    assert Dataset.objects.filter(pk=dataset.pk).exists()
    assert any(key.startswith(storage.dataset_key(dataset.pk)) for key in storage.list_all_keys())
    assert "Cannot delete dataset" in response.content.decode()  # protected rows are named, nothing is removed


@pytest.mark.django_db
def test_dataset_and_run_pages_link_to_their_rows_instead_of_listing_them(client, staff_user, user, make_pair_bytes):
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)])
    client.force_login(staff_user)
    page = client.get(reverse("admin:experiments_dataset_change", args=[dataset.pk])).content.decode()
    assert f"?dataset__id__exact={dataset.pk}" in page and "3 pairs" in page
