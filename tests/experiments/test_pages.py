"""Pages through the Django test client: status codes, isolation, the upload report, URL state."""

import csv
import io
import json
import zipfile

import pytest
from django.urls import reverse

from experiments import storage
from experiments.datasets import services as dataset_services
from experiments.models import Experiment, ImagePair, Run, TrainingJob
from experiments.reporting.charts import pareto_front
from experiments.runs import services as run_services
from experiments.training import services as training_services
from tests.conftest import png_bytes
from tests.factories import make_dataset, run_in_process

pytestmark = pytest.mark.django_db


@pytest.fixture
def finished_run(user, make_pair_bytes, no_queue):
    pairs = [(f"p{i}", *make_pair_bytes(seed=i, box=(4 + 4 * i, 4, 20 + 4 * i, 30))) for i in range(3)]
    dataset = make_dataset(user, pairs=pairs)
    for pair, category in zip(dataset.pairs.order_by("name"), ("urban", "urban", "forest"), strict=True):
        ImagePair.objects.filter(pk=pair.pk).update(category=category)
    experiment = run_services.experiment_create(
        owner=user, dataset=dataset, name="e", detectors=["absdiff", "ssim"], input_size=64, threshold=0.3
    )
    run = run_in_process(run_services.run_start(experiment=experiment))
    assert run.state == "succeeded", run.error
    return run


def upload(client, dataset, files: dict[str, bytes], category=""):
    payload = [io.BytesIO(data) for data in files.values()]
    for handle, name in zip(payload, files, strict=True):
        handle.name = name
    return client.post(
        reverse("experiments:dataset_upload", args=[dataset.pk]), {"files": payload, "category": category}
    )


# --------------------------------------------------------------------------- dashboard
def test_dashboard_lists_only_your_own_things(client, user, other_user, make_pair_bytes):
    make_dataset(user, name="mine", pairs=[("p", *make_pair_bytes())])
    make_dataset(other_user, name="theirs")
    client.force_login(user)
    page = client.get(reverse("experiments:dashboard")).content.decode()
    assert "mine" in page and "theirs" not in page


def test_pages_load_the_vendored_scripts_from_this_server_only(client, user, finished_run):
    client.force_login(user)
    page = client.get(reverse("experiments:run_detail", args=[finished_run.pk])).content.decode()
    assert "/static/vendor/chartjs/chart.umd.min.js" in page
    assert "http://" not in page.split("<body>")[0] and "https://" not in page
    assert "onclick" not in page and "<script>" not in page


# --------------------------------------------------------------------------- upload and report
def test_an_upload_shows_a_report_and_saves_nothing_until_confirmed(client, user, make_pair_bytes):
    dataset = make_dataset(user)
    a, b, label = make_pair_bytes()
    client.force_login(user)
    response = upload(client, dataset, {"p1_A.png": a, "p1_B.png": b, "p1_label.png": label}, category="urban")
    assert response.status_code == 302
    report_url = response["Location"]
    assert dataset.pairs.count() == 0
    page = client.get(report_url).content.decode()
    assert "Validation report" in page and "p1" in page and "Nothing has been saved yet" in page
    token = report_url.rstrip("/").split("/")[-1]
    assert storage.exists(f"uploads/{user.pk}/{token}.zip")
    response = client.post(
        reverse("experiments:dataset_import_confirm", args=[dataset.pk, token]), {"action": "import"}
    )
    assert response.status_code == 302
    pair = dataset.pairs.get()
    assert (pair.name, pair.category, pair.has_label) == ("p1", "urban", True)
    assert not storage.exists(f"uploads/{user.pk}/{token}.zip")
    assert client.get(report_url).status_code == 302  # the token is spent


def test_an_upload_with_problems_names_each_one_and_keeps_nothing(client, user, make_pair_bytes):
    dataset = make_dataset(user)
    a, b, _ = make_pair_bytes(size=48)
    wrong_label = png_bytes(__import__("numpy").zeros((20, 20), "uint8"))
    client.force_login(user)
    files = {"p1_A.png": a, "p1_B.png": b, "p1_label.png": wrong_label, "p2_A.png": a, "p3_A.png": b"not an image"}
    files["p3_B.png"] = b
    response = upload(client, dataset, files)
    assert response.status_code == 400
    page = response.content.decode()
    assert "Nothing was saved" in page
    assert "p2: has no B image" in page
    assert "label of pair &#x27;p1&#x27;" in page
    assert "image_a of pair &#x27;p3&#x27;" in page
    assert dataset.pairs.count() == 0
    assert storage.list_all_keys() == []


def test_a_levir_zip_is_read_with_its_splits(client, user, make_pair_bytes):
    dataset = make_dataset(user)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(2):
            a, b, label = make_pair_bytes(seed=i)
            archive.writestr(f"LEVIR/A/t{i}.png", a)
            archive.writestr(f"LEVIR/B/t{i}.png", b)
            archive.writestr(f"LEVIR/label/t{i}.png", label)
        archive.writestr("LEVIR/list/val.txt", "t1.png\n")
    client.force_login(user)
    report_url = upload(client, dataset, {"levir.zip": buffer.getvalue()})["Location"]
    assert "2 pairs ready" in " ".join(client.get(report_url).content.decode().split())
    token = report_url.rstrip("/").split("/")[-1]
    client.post(reverse("experiments:dataset_import_confirm", args=[dataset.pk, token]), {"action": "import"})
    assert dict(dataset.pairs.values_list("name", "split")) == {"t0": "", "t1": "val"}


def test_discarding_an_upload_removes_the_staged_files(client, user, make_pair_bytes):
    dataset = make_dataset(user)
    a, b, _ = make_pair_bytes()
    client.force_login(user)
    token = upload(client, dataset, {"x_A.png": a, "x_B.png": b})["Location"].rstrip("/").split("/")[-1]
    client.post(reverse("experiments:dataset_import_confirm", args=[dataset.pk, token]), {"action": "discard"})
    assert dataset.pairs.count() == 0
    assert [k for k in storage.list_all_keys() if k.startswith("uploads/")] == []


def test_an_empty_upload_answers_400_with_what_to_do(client, user):
    dataset = make_dataset(user)
    client.force_login(user)
    response = client.post(reverse("experiments:dataset_upload", args=[dataset.pk]), {"category": ""})
    assert response.status_code == 400
    assert "Choose image files" in response.content.decode()


def test_another_user_cannot_upload_into_or_see_a_report_of_your_dataset(client, user, other_user, make_pair_bytes):
    dataset = make_dataset(user)
    a, b, _ = make_pair_bytes()
    client.force_login(user)
    report_url = upload(client, dataset, {"x_A.png": a, "x_B.png": b})["Location"]
    token = report_url.rstrip("/").split("/")[-1]
    client.force_login(other_user)
    assert client.get(report_url).status_code == 404
    assert upload(client, dataset, {"y_A.png": a, "y_B.png": b}).status_code == 404
    confirm = reverse("experiments:dataset_import_confirm", args=[dataset.pk, token])
    assert client.post(confirm, {"action": "import"}).status_code == 404
    assert client.get(reverse("experiments:media", kwargs={"key": f"uploads/{user.pk}/{token}.zip"})).status_code == 404
    assert dataset.pairs.count() == 0


def test_the_dataset_page_filters_by_category_from_the_url(client, user, make_pair_bytes):
    dataset = make_dataset(user, pairs=[("a1", *make_pair_bytes()), ("b1", *make_pair_bytes(seed=1))])
    ImagePair.objects.filter(name="a1").update(category="urban")
    client.force_login(user)
    page = client.get(reverse("experiments:dataset_detail", args=[dataset.pk]) + "?category=urban").content.decode()
    assert "<td>a1</td>" in page and "<td>b1</td>" not in page


# --------------------------------------------------------------------------- create experiment
def test_the_create_page_shows_weights_provenance_and_costs(client, user, make_pair_bytes):
    make_dataset(user, pairs=[("p", *make_pair_bytes())])
    client.force_login(user)
    page = client.get(reverse("experiments:experiment_create")).content.decode()
    assert "untrained (random init)" in page and "none (classical, no weights)" in page
    data = json.loads(page.split('id="cost-data" type="application/json">')[1].split("</script>")[0])
    assert data["detectors"]["absdiff"] == 2 and list(data["datasets"].values()) == [1]


def test_creating_an_experiment_starts_a_run_with_the_chosen_weights(client, user, make_pair_bytes, no_queue):
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    client.force_login(user)
    response = client.post(
        reverse("experiments:experiment_create"),
        {"dataset": dataset.pk, "detectors": ["absdiff", "siamese-unet"], "weights_siamese-unet": "random",
         "threshold": 0.5, "input_size": 64, "seed": 3},
    )  # fmt: skip
    assert response.status_code == 302
    run = Run.objects.get()
    assert run.experiment.detector_weights == {"siamese-unet": "random"}
    assert response["Location"] == reverse("experiments:run_detail", args=[run.pk])


def test_a_plugin_detector_is_offered_and_can_be_started(client, user, make_pair_bytes, no_queue, gradient_plugin):
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    client.force_login(user)
    page = client.get(reverse("experiments:experiment_create")).content.decode()
    assert f'value="{gradient_plugin}"' in page
    response = client.post(
        reverse("experiments:experiment_create"),
        {"dataset": dataset.pk, "detectors": [gradient_plugin], "threshold": 0.5, "input_size": 64, "seed": 0},
    )
    assert response.status_code == 302 and Run.objects.get().experiment.detectors == [gradient_plugin]


def test_an_experiment_that_cannot_start_leaves_no_experiment_behind(client, user, no_queue):
    empty = make_dataset(user, name="empty")
    client.force_login(user)
    response = client.post(
        reverse("experiments:experiment_create"),
        {"dataset": empty.pk, "detectors": ["absdiff"], "threshold": 0.5, "input_size": 64, "seed": 0},
    )
    assert response.status_code == 400 and "no image pairs" in response.content.decode()
    assert not Experiment.objects.exists() and not Run.objects.exists()


def test_a_bad_experiment_answers_400_and_creates_nothing(client, user, make_pair_bytes, no_queue):
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    client.force_login(user)
    response = client.post(
        reverse("experiments:experiment_create"),
        {"dataset": dataset.pk, "detectors": ["absdiff"], "baseline_detector": "ssim", "threshold": 0.5,
         "input_size": 64, "seed": 0},
    )  # fmt: skip
    assert response.status_code == 400
    assert "The baseline must be one of the chosen detectors." in response.content.decode()
    assert Run.objects.count() == 0


# --------------------------------------------------------------------------- leaderboard
def leaderboard_order(page: str) -> list[str]:
    body = page.split('id="leaderboard-table"')[1].split("</table>")[0]
    return [chunk.split('"')[0] for chunk in body.split('<tr data-detector="')[1:]]


def test_a_finished_run_shows_its_leaderboard_with_labelled_metrics(client, user, finished_run):
    client.force_login(user)
    page = client.get(reverse("experiments:run_detail", args=[finished_run.pk])).content.decode()
    assert "IoU (pooled)" in page and "IoU (per-pair mean)" in page
    assert sorted(leaderboard_order(page)) == ["absdiff", "ssim"]
    assert 'id="chart-data"' in page and 'id="repro-card"' in page


def test_sorting_and_baseline_come_from_the_url(client, user, finished_run):
    client.force_login(user)
    url = reverse("experiments:run_detail", args=[finished_run.pk])
    rows = {r["detector"]: r for r in finished_run.leaderboard["detectors"]}
    by_latency = sorted(rows, key=lambda d: rows[d]["latency_ms_p50"])
    assert leaderboard_order(client.get(url + "?sort=latency_ms_p50&dir=asc").content.decode()) == by_latency
    assert leaderboard_order(client.get(url + "?sort=latency_ms_p50&dir=desc").content.decode()) == by_latency[::-1]
    page = client.get(url + "?baseline=ssim").content.decode()
    assert '<tr data-detector="ssim" class="baseline">' in page
    assert '<option value="ssim" selected>' in page


def test_deltas_are_coloured_by_whether_higher_is_better(client, user, finished_run):
    client.force_login(user)
    page = client.get(reverse("experiments:run_results", args=[finished_run.pk]) + "?baseline=absdiff").content.decode()
    rows = {r["detector"]: r for r in finished_run.leaderboard["detectors"]}
    diff = rows["ssim"]["pooled"]["iou"] - rows["absdiff"]["pooled"]["iou"]
    verdict = "better" if diff > 0 else "worse"
    ssim_row = page.split('<tr data-detector="ssim"')[1].split("</tr>")[0]
    assert f'class="delta {verdict}"' in ssim_row and f"Δ {diff:+.3f}" in ssim_row


def test_csv_export_follows_the_chosen_baseline_and_json_holds_the_record(client, user, finished_run):
    client.force_login(user)
    url = reverse("experiments:run_export", args=[finished_run.pk, "csv"])
    rows = list(csv.DictReader(io.StringIO(client.get(url + "?baseline=ssim").content.decode())))
    assert {r["detector"] for r in rows} == {"absdiff", "ssim"}
    by_name = {r["detector"]: r for r in rows}
    assert by_name["ssim"]["is_baseline"] == "True" and by_name["ssim"]["pooled_iou_delta_vs_baseline"] == ""
    expected = float(by_name["absdiff"]["pooled_iou"]) - float(by_name["ssim"]["pooled_iou"])
    assert float(by_name["absdiff"]["pooled_iou_delta_vs_baseline"]) == pytest.approx(expected)
    data = json.loads(client.get(reverse("experiments:run_export", args=[finished_run.pk, "json"])).content)
    assert data["leaderboard"] == finished_run.leaderboard and data["run"] == finished_run.pk
    assert [r["detector"] for r in data["rows"]] == [r["detector"] for r in rows]
    assert client.get(reverse("experiments:run_export", args=[finished_run.pk, "xml"])).status_code == 404


def test_a_queued_run_has_no_results_section_yet(client, user, make_pair_bytes, no_queue):
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    run = run_services.run_start(
        experiment=run_services.experiment_create(owner=user, dataset=dataset, name="q", detectors=["absdiff"])
    )
    client.force_login(user)
    page = client.get(reverse("experiments:run_detail", args=[run.pk])).content.decode()
    assert 'id="leaderboard"' not in page and 'data-initial-state="queued"' in page
    fragment = client.get(reverse("experiments:run_results", args=[run.pk])).content.decode()
    assert 'id="leaderboard"' not in fragment and 'id="repro-card"' in fragment


# --------------------------------------------------------------------------- gallery and pair
def gallery_names(page: str) -> list[str]:
    return [chunk.split(" ")[0].split("<")[0] for chunk in page.split("<h3>")[1:]]


def test_the_gallery_sorts_by_worst_iou_and_filters_from_the_url(client, user, finished_run):
    client.force_login(user)
    url = reverse("experiments:run_gallery", args=[finished_run.pk])
    worst = {}
    for result in finished_run.results.all():
        worst[result.pair.name] = min(worst.get(result.pair.name, 1.0), result.iou)
    assert gallery_names(client.get(url).content.decode()) == sorted(worst, key=lambda n: (worst[n], n))
    assert sorted(gallery_names(client.get(url + "?category=forest").content.decode())) == ["p2"]
    absdiff = {r.pair.name: r.iou for r in finished_run.results.filter(detector="absdiff")}
    low = sorted(absdiff.values())[1]
    names = gallery_names(client.get(url + f"?a=absdiff&metric=iou&min={low}").content.decode())
    assert sorted(names) == sorted(n for n, v in absdiff.items() if v >= low)


def test_the_gallery_sorts_by_disagreement_and_false_positive_area(client, user, finished_run):
    client.force_login(user)
    url = reverse("experiments:run_gallery", args=[finished_run.pk])
    by_pair = {}
    for r in finished_run.results.all():
        by_pair.setdefault(r.pair.name, {})[r.detector] = r
    from inference.images import load_mask
    from inference.statistics import mask_iou

    def mask(result):
        return load_mask(storage.read_bytes(result.mask_key))[0]

    gap = {n: 1.0 - mask_iou(mask(d["absdiff"]), mask(d["ssim"])) for n, d in by_pair.items()}
    assert len(set(gap.values())) == len(gap), "the pairs must disagree by different amounts to test the order"
    page = client.get(url + "?sort=disagreement&a=absdiff&b=ssim").content.decode()
    assert gallery_names(page) == sorted(gap, key=lambda n: (-gap[n], n))
    fp = {n: max(r.metrics["fp_area"] for r in d.values()) for n, d in by_pair.items()}
    assert gallery_names(client.get(url + "?sort=fp_area").content.decode()) == sorted(fp, key=lambda n: (-fp[n], n))


def test_a_bad_gallery_query_says_what_is_wrong(client, user, finished_run):
    client.force_login(user)
    response = client.get(reverse("experiments:run_gallery", args=[finished_run.pk]) + "?sort=best&a=nope&min=x")
    assert response.status_code == 400
    text = response.content.decode()
    assert "Unknown sort" in text and "is not a detector of this run" in text and "must be numbers" in text


def test_pair_detail_shows_every_detector_and_links_neighbours_in_gallery_order(client, user, finished_run):
    client.force_login(user)
    pairs = {p.name: p for p in finished_run.experiment.dataset.pairs.all()}
    query = "sort=name&a=absdiff&b=ssim&metric=iou"
    page = client.get(reverse("experiments:pair_detail", args=[finished_run.pk, pairs["p1"].pk]) + "?" + query)
    text = page.content.decode()
    assert page.status_code == 200
    assert text.count("data-heat ") == 2 and "img-comparison-slider" in text
    assert f'href="/runs/{finished_run.pk}/pairs/{pairs["p0"].pk}/?{query.replace("&", "&amp;")}"' in text
    assert f'href="/runs/{finished_run.pk}/pairs/{pairs["p2"].pk}/?{query.replace("&", "&amp;")}"' in text
    assert "change found (true positive)" in text and "Alignment was off" in text


def test_pages_of_a_run_answer_404_to_another_user(client, other_user, finished_run):
    client.force_login(other_user)
    pair = finished_run.experiment.dataset.pairs.first()
    result = finished_run.results.first()
    for url in (
        reverse("experiments:run_results", args=[finished_run.pk]),
        reverse("experiments:run_gallery", args=[finished_run.pk]),
        reverse("experiments:pair_detail", args=[finished_run.pk, pair.pk]),
        reverse("experiments:run_export", args=[finished_run.pk, "csv"]),
        reverse("experiments:run_export", args=[finished_run.pk, "json"]),
        reverse("experiments:media", kwargs={"key": result.heatmap_key}),
    ):
        assert client.get(url).status_code == 404, url


def test_a_pair_of_another_dataset_is_not_found_under_this_run(client, user, finished_run, make_pair_bytes):
    other = make_dataset(user, name="other", pairs=[("z", *make_pair_bytes())])
    client.force_login(user)
    url = reverse("experiments:pair_detail", args=[finished_run.pk, other.pairs.get().pk])
    assert client.get(url).status_code == 404


# --------------------------------------------------------------------------- training
def test_training_offers_only_learned_detectors_and_explains_refusals(client, user, make_pair_bytes):
    dataset = make_dataset(user, pairs=[("p", *make_pair_bytes())])
    client.force_login(user)
    page = client.get(reverse("experiments:training_list")).content.decode()
    assert 'value="siamese-unet"' in page and 'value="absdiff"' not in page
    response = client.post(
        reverse("experiments:training_list"),
        {"detector": "siamese-unet", "dataset": dataset.pk, "epochs": 1, "loss": "bce-dice", "size": 64,
         "seed": 0, "batch_size": 2},
    )  # fmt: skip
    assert response.status_code == 400
    assert "at least two pairs with labels" in response.content.decode()
    assert TrainingJob.objects.count() == 0


def test_a_training_job_page_is_yours_alone(client, user, other_user, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.training.services._enqueue_training", lambda job_id: None)
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(2)])
    job = training_services.training_start(owner=user, detector="siamese-unet", dataset=dataset, epochs=1, size=64)
    client.force_login(user)
    page = client.get(reverse("experiments:training_detail", args=[job.pk])).content.decode()
    assert f'data-ws-url="/ws/training/{job.pk}/"' in page and 'id="training-history"' in page
    assert client.get(reverse("experiments:training_status", args=[job.pk])).json()["state"] == "queued"
    client.force_login(other_user)
    for name in ("training_detail", "training_status"):
        assert client.get(reverse(f"experiments:{name}", args=[job.pk])).status_code == 404
    assert client.post(reverse("experiments:training_cancel", args=[job.pk])).status_code == 404


def test_the_pareto_front_keeps_points_nothing_beats_on_both_axes():
    points = [
        {"detector": "fast", "latency": 1, "iou": 0.5},
        {"detector": "good", "latency": 10, "iou": 0.9},
        {"detector": "worse", "latency": 20, "iou": 0.6},
        {"detector": "middle", "latency": 5, "iou": 0.7},
    ]
    assert pareto_front(points) == ["fast", "good", "middle"]


def test_the_training_page_says_where_training_starts_and_how_long_it_takes(client, user, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    client.force_login(user)
    page = client.get(reverse("experiments:training_list")).content.decode()
    assert "siamese-resnet50" in page
    assert "from scratch: no ImageNet weights" in page
    assert "Est. CPU time per epoch" in page


def test_datasets_behind_batch_jobs_are_not_listed(client, user):

    dataset_services.dataset_create(owner=user, name="mine")
    dataset_services.dataset_create(owner=user, name="batch-7-abcdef12", hidden=True)
    client.force_login(user)
    for name in ("experiments:dataset_list", "experiments:dashboard", "experiments:experiment_create"):
        page = client.get(reverse(name)).content.decode()
        assert "batch-7-abcdef12" not in page, name
    assert "mine" in client.get(reverse("experiments:dataset_list")).content.decode()


def test_pair_detail_shows_the_consensus_map(client, user, finished_run):
    client.force_login(user)
    pair = finished_run.experiment.dataset.pairs.first()
    page = client.get(reverse("experiments:pair_detail", args=[finished_run.pk, pair.pk])).content.decode()
    assert 'id="consensus-map"' in page
    src = page.split('id="consensus-map" src="')[1].split('"')[0]
    assert client.get(src).status_code == 200
