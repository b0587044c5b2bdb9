import pytest

from experiments import lifecycle, storage
from experiments.datasets import services as dataset_services
from experiments.errors import InvalidState, ServiceError
from experiments.models import ImagePair, Run, RunState
from experiments.runs import services as run_services
from tests.factories import make_dataset


@pytest.mark.django_db
def test_pair_create_stores_images_hashes_and_sizes(user, make_pair_bytes):
    a, b, label = make_pair_bytes()
    dataset = make_dataset(user, pairs=[("p1", a, b, label)])
    pair = dataset.pairs.get()
    assert (pair.b_width, pair.b_height) == (48, 48)
    assert storage.read_bytes(pair.image_a) == a
    assert len(pair.a_sha256) == 64 and pair.a_sha256 != pair.b_sha256
    assert pair.has_label


@pytest.mark.django_db
def test_pair_create_rejects_a_corrupt_image_and_leaves_nothing(user, make_pair_bytes):
    a, _, label = make_pair_bytes()
    dataset = make_dataset(user)
    with pytest.raises(ServiceError, match="image_b"):
        dataset_services.pair_create(dataset=dataset, name="bad", a_bytes=a, b_bytes=b"not an image", label_bytes=label)
    assert not ImagePair.objects.exists()
    assert storage.list_all_keys() == []


@pytest.mark.django_db
def test_pair_create_rejects_a_label_of_another_size(user, make_pair_bytes):
    a, b, _ = make_pair_bytes(size=48)
    _, _, small_label = make_pair_bytes(size=32, box=(1, 1, 5, 5))
    dataset = make_dataset(user)
    with pytest.raises(ServiceError, match="label"):
        dataset_services.pair_create(dataset=dataset, name="p", a_bytes=a, b_bytes=b, label_bytes=small_label)
    assert storage.list_all_keys() == []


@pytest.mark.django_db
def test_pairs_store_writes_all_or_nothing(user, make_pair_bytes):
    a, b, label = make_pair_bytes()
    dataset = make_dataset(user, pairs=[("taken", a, b, label)])
    checked = [dataset_services.pair_check(name=n, a_bytes=a, b_bytes=b, label_bytes=label) for n in ("new", "taken")]
    keys_before = set(storage.list_all_keys())
    with pytest.raises(ServiceError, match="taken"):
        dataset_services.pairs_store(dataset=dataset, checked=checked)
    assert set(storage.list_all_keys()) == keys_before
    assert dataset.pairs.count() == 1


@pytest.mark.django_db
def test_experiment_create_rejects_unknown_detectors(user, make_pair_bytes):
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    with pytest.raises(ServiceError, match="unknown detector"):
        run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["nope"])


@pytest.mark.django_db
def test_experiment_create_refuses_another_users_dataset(user, other_user, make_pair_bytes):
    dataset = make_dataset(other_user, pairs=[("p", *make_pair_bytes())])
    with pytest.raises(ServiceError) as info:
        run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    assert info.value.status == 404


@pytest.mark.django_db
def test_run_start_refuses_an_empty_dataset(user):
    dataset = make_dataset(user)
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    with pytest.raises(ServiceError, match="no image pairs"):
        run_services.run_start(experiment=experiment)
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_run_start_queues_only_on_commit(user, make_pair_bytes, django_capture_on_commit_callbacks, monkeypatch):
    queued = []
    monkeypatch.setattr("experiments.outbox.send_run", queued.append)
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff", "ssim"])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = run_services.run_start(experiment=experiment)
        assert queued == []
    assert len(callbacks) == 1
    assert queued == [run.pk]
    assert run.progress_total == 2


@pytest.mark.django_db
def test_run_state_machine_refuses_illegal_transitions(user, make_pair_bytes):
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    run = run_services.run_start(experiment=experiment)
    with pytest.raises(InvalidState):
        lifecycle.run_transition(run.pk, RunState.SUCCEEDED)
    run = lifecycle.run_transition(run.pk, RunState.RUNNING)
    assert run.started_at is not None
    run = lifecycle.run_transition(run.pk, RunState.FAILED, error="boom")
    assert run.finished_at is not None
    with pytest.raises(InvalidState):
        run_services.run_cancel(run=run)


@pytest.mark.django_db
def test_cancel_of_a_queued_run_is_immediate_and_retry_requeues(user, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=["absdiff"])
    run = run_services.run_start(experiment=experiment)
    run = run_services.run_cancel(run=run)
    assert run.state == RunState.CANCELLED
    run = run_services.run_retry(run=run)
    assert run.state == RunState.QUEUED and not run.cancel_requested
