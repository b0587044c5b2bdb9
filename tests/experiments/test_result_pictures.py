"""A result's heatmap and error map are drawn the first time they are read (`result_pictures`), off the
run's critical path: the same pixels as drawing them from the map itself, for the owner only, once."""

import io
import threading
import uuid

import numpy as np
import pytest
from django.urls import reverse
from PIL import Image

from experiments import storage
from experiments.runs import result_pictures
from experiments.runs import services as run_services
from experiments.runs.pair_inputs import load_pair_images
from inference import create_detector
from inference.images import load_mask
from inference.render import error_map_png, heatmap_png
from tests.conftest import png_bytes
from tests.factories import PASSWORD, make_dataset, run_in_process


@pytest.fixture(autouse=True)
def no_broker(monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)


def _run(user, count=3, detectors=("absdiff",)):
    salt = uuid.uuid4().int % 10**9  # pairs never seen before: the result cache outlives a test
    pairs = []
    for index in range(count):
        rng = np.random.default_rng([salt, index])
        a = rng.integers(0, 255, size=(36, 44, 3), dtype=np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-40, 40, size=a.shape), 0, 255).astype(np.uint8)
        label = np.zeros(a.shape[:2], np.uint8)
        label[5:20, 3 + index : 30] = 255
        pairs.append((f"p{index}", png_bytes(a), png_bytes(b), png_bytes(label)))
    dataset = make_dataset(user, name=f"d{salt}", pairs=pairs)
    experiment = run_services.experiment_create(owner=user, dataset=dataset, name="e", detectors=list(detectors))
    return run_in_process(run_services.run_start(experiment=experiment))


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


@pytest.mark.django_db
def test_pictures_are_drawn_on_first_read_with_the_pixels_of_the_map_itself(user):
    run = _run(user)
    detector = create_detector("absdiff")
    for result in run.results.select_related("pair"):
        assert not storage.exists(result.heatmap_key) and not storage.exists(result.error_map_key)
        a, b = load_pair_images(result.pair)
        prob = detector.predict(a, b)  # the map, computed again outside the engine
        label, _ = load_mask(storage.read_bytes(result.pair.label))
        expected_heatmap = _pixels(heatmap_png(prob))
        expected_errors = _pixels(error_map_png(prob >= run.experiment.threshold, label))
        assert np.array_equal(_pixels(result_pictures.read(result.heatmap_key)), expected_heatmap)
        assert np.array_equal(_pixels(result_pictures.read(result.error_map_key)), expected_errors)
        assert storage.exists(result.heatmap_key) and storage.exists(result.error_map_key)  # kept once drawn


@pytest.mark.django_db
def test_the_media_view_draws_for_the_owner_and_draws_nothing_for_anyone_else(user, other_user, client):
    run = _run(user, count=1)
    result = run.results.get()
    url = reverse("experiments:media", kwargs={"key": result.error_map_key})
    client.login(username=other_user.username, password=PASSWORD)
    assert client.get(url).status_code == 404
    assert not storage.exists(result.error_map_key)
    client.login(username=user.username, password=PASSWORD)
    response = client.get(url)
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    assert _pixels(b"".join(response.streaming_content)).shape == (36, 44, 3)
    levels = reverse("experiments:media", kwargs={"key": result.heatmap_key.replace("heatmap.png", "levels.png")})
    assert client.get(levels).status_code == 404  # the stored map is internal: only its pictures are served


@pytest.mark.django_db(transaction=True)
def test_readers_at_the_same_moment_all_get_the_whole_picture(user):
    run = _run(user, count=1)
    key = run.results.get().heatmap_key
    answers, errors = [], []

    def read():
        try:
            answers.append(result_pictures.read(key))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            from django.db import connection

            connection.close()

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(answers) == 8 and len(set(answers)) == 1
    assert _pixels(answers[0]).shape[0] == 36
    folder = key.rsplit("/", 1)[0]
    names = sorted(k.rsplit("/", 1)[1] for k in storage.list_all_keys(folder))
    assert names == ["heatmap.png", "levels.png", "mask.png"]  # no partial or duplicate files left


@pytest.mark.django_db
def test_a_cached_rerun_links_results_whose_pictures_were_never_drawn(user):
    first = _run(user, count=2)
    again = run_in_process(run_services.run_start(experiment=first.experiment))
    assert again.state == "succeeded"
    assert [r.from_cache for r in again.results.all()] == [True, True]
    for result in again.results.all():
        assert _pixels(result_pictures.read(result.heatmap_key)).ndim == 3
