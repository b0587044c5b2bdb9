import pytest
from django.urls import reverse

from experiments.models import RunState
from experiments.runs import services as run_services
from tests.factories import make_dataset

MODELS = ["dataset", "imagepair", "experiment", "run", "result", "modelcheckpoint", "pairalignment", "trainingjob",
          "batchjob"]  # fmt: skip


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
