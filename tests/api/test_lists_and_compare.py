"""Lists of experiments and runs (search, filters, pages), comparing runs and the benchmark matrix over the API."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from scipy import stats

from experiments.models import BatchJob, Experiment, Result, Run
from experiments.runs import services as run_services
from tests.api.test_datasets import error_of
from tests.conftest import png_bytes
from tests.factories import make_dataset, run_in_process

pytestmark = pytest.mark.django_db


def noisy_pairs(count=6, seed=0, size=48):
    """Pairs whose change is faint and of varying contrast, so the threshold moves each pair's IoU."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        a = rng.integers(60, 160, size=(size, size, 3)).astype(np.int16)
        b = a + rng.normal(0, 10, size=a.shape).astype(np.int16)
        y0, x0 = rng.integers(2, 20, size=2)
        h, w = rng.integers(8, 24, size=2)
        b[y0 : y0 + h, x0 : x0 + w] += int(rng.integers(25, 110))
        label = np.zeros((size, size), np.uint8)
        label[y0 : y0 + h, x0 : x0 + w] = 255
        a8, b8 = np.clip(a, 0, 255).astype(np.uint8), np.clip(b, 0, 255).astype(np.uint8)
        pairs.append((f"p{i}", png_bytes(a8), png_bytes(b8), png_bytes(label)))
    return pairs


def finished(owner, dataset, name="e", detectors=("absdiff", "ssim"), threshold=0.3) -> Run:
    experiment = run_services.experiment_create(
        owner=owner, dataset=dataset, name=name, detectors=list(detectors), threshold=threshold
    )
    run = run_in_process(run_services.run_start(experiment=experiment))
    assert run.state == "succeeded", run.error
    return run


def queued(owner, dataset, name="q", detectors=("absdiff",)) -> Run:
    weights = dict.fromkeys(detectors, "random")  # queued only: nothing is loaded
    experiment = run_services.experiment_create(
        owner=owner, dataset=dataset, name=name, detectors=list(detectors), detector_weights=weights
    )
    return run_services.run_start(experiment=experiment)


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [item["id"] for item in response.json()["results"]]


@pytest.fixture
def world(user, other_user, no_queue):
    """Two datasets of the user, runs in several states and detectors; the other user's run on the same names."""
    roads = make_dataset(user, name="roads", pairs=noisy_pairs(3, seed=1))
    fields = make_dataset(user, name="fields", pairs=noisy_pairs(3, seed=2))
    done = finished(user, roads, name="alpha roads", detectors=("absdiff", "ssim"))
    waiting = queued(user, fields, name="beta fields", detectors=("siamese-unet",))
    theirs = queued(other_user, make_dataset(other_user, name="roads", pairs=noisy_pairs(1)), name="alpha roads")
    return {"roads": roads, "fields": fields, "done": done, "waiting": waiting, "theirs": theirs}


def test_the_runs_list_is_yours_newest_first(api, world):
    assert ids(api.get("/api/v1/runs/")) == [world["waiting"].pk, world["done"].pk]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=succeeded", ["done"]),
        ("state=queued", ["waiting"]),
        ("state=queued,succeeded", ["waiting", "done"]),
        ("state=failed", []),
        ("search=ALPHA", ["done"]),
        ("search=fields", ["waiting"]),  # the dataset's name
        ("detector=siamese-unet", ["waiting"]),
        ("detector=ssim", ["done"]),
        ("detector=ss", []),  # an element of the list, not a substring of its text
        ("detector=siamese", []),
    ],
)
def test_each_run_filter_narrows_the_list(api, world, query, expected):
    assert ids(api.get(f"/api/v1/runs/?{query}")) == [world[name].pk for name in expected]


def test_runs_filter_by_dataset_experiment_id_search_and_dates(api, world):
    assert ids(api.get(f"/api/v1/runs/?dataset={world['roads'].pk}")) == [world["done"].pk]
    assert ids(api.get(f"/api/v1/runs/?experiment={world['waiting'].experiment_id}")) == [world["waiting"].pk]
    assert ids(api.get(f"/api/v1/runs/?search=%23{world['done'].pk}")) == [world["done"].pk]
    Run.objects.filter(pk=world["done"].pk).update(created_at=timezone.now() - timedelta(days=10))
    today = timezone.localdate().isoformat()
    assert ids(api.get(f"/api/v1/runs/?created_after={today}")) == [world["waiting"].pk]
    assert ids(api.get(f"/api/v1/runs/?created_before={today}")) == [world["waiting"].pk, world["done"].pk]
    week_ago = (timezone.now() - timedelta(days=7)).isoformat()
    assert ids(api.get("/api/v1/runs/", {"created_before": week_ago})) == [world["done"].pk]


def test_another_users_runs_never_appear_whatever_the_filter(api, other_api, world):
    everything = ids(api.get("/api/v1/runs/?search=alpha roads"))
    assert world["theirs"].pk not in everything
    assert ids(other_api.get("/api/v1/runs/")) == [world["theirs"].pk]
    assert ids(other_api.get(f"/api/v1/runs/?dataset={world['roads'].pk}")) == []
    assert ids(other_api.get("/api/v1/experiments/?search=beta")) == []


def test_staff_see_every_run(staff_user, world):
    from tests.api.conftest import token_client

    assert set(ids(token_client(staff_user).get("/api/v1/runs/"))) == {
        world["done"].pk, world["waiting"].pk, world["theirs"].pk
    }  # fmt: skip


def test_runs_behind_batch_jobs_are_not_listed(api, user, world):
    BatchJob.objects.create(owner=user, payload_sha256="0" * 64, detectors=["absdiff"], run=world["waiting"])
    assert ids(api.get("/api/v1/runs/")) == [world["done"].pk]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("state=finished", "state"),
        ("dataset=abc", "dataset"),
        ("dataset=-3", "dataset"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-02-30", "created_before"),
        ("created_after=2026-3-1", "created_after"),  # Django would read it; the schema's RFC 3339 does not
        ("created_after=2026-03-31T08:00:00", "created_after"),  # a date-time needs its offset
        ("state=queued,%20running", "state"),
    ],
)
def test_a_bad_filter_answers_400_saying_what_to_send(api, world, query, field):
    response = api.get(f"/api/v1/runs/?{query}")
    assert response.status_code == 400
    assert field in error_of(response)["message"]
    assert api.get(f"/api/v1/experiments/?{query}").status_code == 400


@pytest.mark.parametrize(
    "query",
    [
        "state=",
        "created_before=9999-12-31",  # its end is past Python's range
        "created_after=0001-01-01T00:00:00%2B05:00",  # before year 1 in UTC
        "created_before=9999-12-31T23:00:00-05:00",  # after 9999 in UTC
        "created_after=2026-03-31t08:00:00.1234567z",  # RFC 3339: any case, any fraction
        "created_after=2016-12-31T23:59:60Z",  # a leap second
    ],
)
def test_schema_valid_filters_at_the_edges_answer_200(api, world, query):
    assert api.get(f"/api/v1/runs/?{query}").status_code == 200
    assert api.get(f"/api/v1/experiments/?{query}").status_code == 200


def test_bounds_past_pythons_range_keep_their_meaning(api, world):
    everything = ids(api.get("/api/v1/runs/"))
    assert ids(api.get("/api/v1/runs/?created_before=9999-12-31")) == everything
    assert ids(api.get("/api/v1/runs/?created_after=0001-01-01T00:00:00%2B05:00")) == everything
    assert ids(api.get("/api/v1/runs/?created_after=9999-12-31T23:00:00-05:00")) == []
    assert ids(api.get("/api/v1/runs/?created_before=0001-01-01T00:00:00%2B05:00")) == []


def test_experiments_filter_by_newest_runs_state_detector_dataset_and_search(api, world, no_queue):
    done, waiting = world["done"].experiment_id, world["waiting"].experiment_id
    assert ids(api.get("/api/v1/experiments/")) == [waiting, done]
    assert ids(api.get("/api/v1/experiments/?state=succeeded")) == [done]
    assert ids(api.get("/api/v1/experiments/?detector=ssim")) == [done]
    assert ids(api.get(f"/api/v1/experiments/?dataset={world['fields'].pk}")) == [waiting]
    assert ids(api.get("/api/v1/experiments/?search=beta")) == [waiting]
    run_services.run_start(experiment=Experiment.objects.get(pk=done))  # its newest run is now queued
    assert ids(api.get("/api/v1/experiments/?state=succeeded")) == []
    assert ids(api.get("/api/v1/experiments/?state=queued")) == [waiting, done]


def test_lists_come_in_cursor_pages(api, user, world):
    for i in range(4):
        queued(user, world["roads"], name=f"more {i}")
    first = api.get(f"/api/v1/runs/?page_size=2&dataset={world['roads'].pk}").json()
    assert len(first["results"]) == 2 and first["next"]
    seen = [r["id"] for r in first["results"]]
    page = first
    while page["next"]:
        page = api.get(page["next"]).json()
        seen += [r["id"] for r in page["results"]]
    expected = list(Run.objects.filter(experiment__dataset=world["roads"]).order_by("-created_at", "-pk"))
    assert sorted(seen) == sorted(r.pk for r in expected) and len(seen) == 5
    assert api.get("/api/v1/runs/?page_size=0").status_code == 400


# --------------------------------------------------------------------------- compare
@pytest.fixture
def two_thresholds(user, no_queue):
    dataset = make_dataset(user, name="noisy", pairs=noisy_pairs(8, seed=3))
    low = finished(user, dataset, name="low", detectors=("absdiff", "ssim"), threshold=0.15)
    high = finished(user, dataset, name="high", detectors=("absdiff",), threshold=0.45)
    return low, high


def reference_wilcoxon(run_a: Run, run_b: Run, detector: str):
    """scipy on the two runs' IoUs of the same pairs (changed pairs: the label has change), read from the rows."""

    def ious(run):
        rows = Result.objects.filter(run=run, detector=detector).exclude(iou=None)
        return {r.pair.a_sha256 + r.pair.b_sha256: r.iou for r in rows if r.metrics["tp"] + r.metrics["fn"] > 0}

    a, b = ious(run_a), ious(run_b)
    shared = sorted(a.keys() & b.keys())
    x, y = np.array([b[k] for k in shared]), np.array([a[k] for k in shared])
    return len(shared), stats.wilcoxon(x, y, zero_method="wilcox").pvalue, float(np.mean(x - y))


def test_compare_two_runs_gives_rows_per_detector_and_run_and_scipys_wilcoxon(api, two_thresholds):
    low, high = two_thresholds
    body = api.get(f"/api/v1/compare/?runs={low.pk},{high.pk}").json()
    assert [r["id"] for r in body["runs"]] == [low.pk, high.pk] and body["baseline_run"] == low.pk
    assert [(r["detector"], r["run"]) for r in body["rows"]] == [("absdiff", low.pk), ("absdiff", high.pk),
                                                                  ("ssim", low.pk)]  # fmt: skip
    leaderboard = api.get(f"/api/v1/runs/{high.pk}/leaderboard/").json()["rows"][0]
    assert body["rows"][1]["pooled_f1"] == leaderboard["pooled_f1"]  # the leaderboard's own columns
    (test,) = body["tests"]
    n, p, mean = reference_wilcoxon(low, high, "absdiff")
    assert (test["detector"], test["run"], test["baseline_run"]) == ("absdiff", high.pk, low.pk)
    assert test["n"] == n == 8
    assert test["wilcoxon_p"] == pytest.approx(p, rel=1e-9) and test["mean_difference"] == pytest.approx(mean)
    assert test["wilcoxon_p_holm"] == pytest.approx(p)  # one run compared: Holm changes nothing
    assert mean != 0


def test_the_baseline_run_can_be_chosen(api, two_thresholds):
    low, high = two_thresholds
    body = api.get(f"/api/v1/compare/?runs={low.pk},{high.pk}&baseline={high.pk}").json()
    (test,) = body["tests"]
    assert body["baseline_run"] == high.pk and test["run"] == low.pk
    assert test["mean_difference"] == pytest.approx(-reference_wilcoxon(low, high, "absdiff")[2])


def test_holm_adjusts_over_the_runs_of_one_detector(api, user, two_thresholds):
    low, high = two_thresholds
    third = finished(user, low.experiment.dataset, name="mid", detectors=("absdiff",), threshold=0.3)
    tests = api.get(f"/api/v1/compare/?runs={low.pk},{high.pk},{third.pk}").json()["tests"]
    p = {t["run"]: t["wilcoxon_p"] for t in tests}
    ordered = sorted(p.values())
    assert {t["run"]: t["wilcoxon_p_holm"] for t in tests}[min(p, key=p.get)] == pytest.approx(min(1, 2 * ordered[0]))


def test_runs_on_two_datasets_with_the_same_images_share_pairs_by_fingerprint(api, user, no_queue):
    pairs = noisy_pairs(5, seed=4)
    first = finished(user, make_dataset(user, name="one", pairs=pairs), detectors=("absdiff",), threshold=0.15)
    second = finished(user, make_dataset(user, name="two", pairs=pairs[1:]), detectors=("absdiff",), threshold=0.45)
    (test,) = api.get(f"/api/v1/compare/?runs={first.pk},{second.pk}").json()["tests"]
    n, p, _ = reference_wilcoxon(first, second, "absdiff")
    assert test["n"] == n == 4 and test["wilcoxon_p"] == pytest.approx(p)


def test_runs_without_shared_pairs_have_rows_but_no_tests(api, user, no_queue):
    a = finished(user, make_dataset(user, name="a", pairs=noisy_pairs(2, seed=5)), detectors=("absdiff",))
    b = finished(user, make_dataset(user, name="b", pairs=noisy_pairs(2, seed=6)), detectors=("absdiff",))
    body = api.get(f"/api/v1/compare/?runs={a.pk},{b.pk}").json()
    assert len(body["rows"]) == 2 and body["tests"] == []


def test_all_runs_of_one_detector(api, user, two_thresholds, world):
    low, high = two_thresholds
    body = api.get("/api/v1/compare/?detector=absdiff").json()
    assert [r["id"] for r in body["runs"]] == [world["done"].pk, high.pk, low.pk]  # newest first; queued left out
    assert {r["detector"] for r in body["rows"]} == {"absdiff"}


def test_comparing_another_users_run_answers_404(api, other_user, two_thresholds, no_queue):
    low, _ = two_thresholds
    theirs = finished(other_user, make_dataset(other_user, pairs=noisy_pairs(2)), detectors=("absdiff",))
    response = api.get(f"/api/v1/compare/?runs={low.pk},{theirs.pk}")
    assert response.status_code == 404 and str(theirs.pk) in error_of(response)["message"]


@pytest.mark.parametrize(
    ("query", "status"),
    [  # 400: not the schema's syntax; 422: the schema's syntax, refused by a rule
        ("", 422),
        ("baseline=1&detector=", 422),
        ("runs=1", 422),
        ("runs=0,1", 422),
        ("runs=a,b", 400),
        ("runs=1,%202", 400),
        ("runs=1,2&baseline=x", 400),
        ("runs=1,2&baseline=0", 400),
        ("runs=999998,999999", 404),
    ],
)
def test_bad_compare_requests_say_what_to_send(api, query, status):
    response = api.get(f"/api/v1/compare/?{query}")
    assert response.status_code == status
    assert error_of(response)["message"]


def test_a_run_without_a_leaderboard_answers_409(api, two_thresholds, world):
    low, _ = two_thresholds
    response = api.get(f"/api/v1/compare/?runs={low.pk},{world['waiting'].pk}")
    assert response.status_code == 409 and "queued" in error_of(response)["message"]


def test_a_baseline_outside_the_runs_is_refused(api, two_thresholds, world):
    low, high = two_thresholds
    response = api.get(f"/api/v1/compare/?runs={low.pk},{high.pk}&baseline={world['done'].pk}")
    assert response.status_code == 422 and "baseline" in error_of(response)["fields"]


# --------------------------------------------------------------------------- benchmarks
def test_benchmarks_hold_the_newest_run_per_detector_and_dataset(api, other_api, two_thresholds, world):
    low, high = two_thresholds
    body = api.get("/api/v1/benchmarks/").json()
    assert [d["name"] for d in body["datasets"]] == ["noisy", "roads"]
    rows = {r["detector"]: r["cells"] for r in body["rows"]}
    assert set(rows) == {"absdiff", "ssim"}
    assert rows["absdiff"][0]["run"] == high.pk and rows["ssim"][0]["run"] == low.pk
    assert rows["absdiff"][1]["run"] == world["done"].pk
    pooled = high.leaderboard["detectors"][0]["pooled"]
    assert rows["absdiff"][0]["f1"] == pytest.approx(pooled["f1"]) and rows["absdiff"][0]["iou"] == pooled["iou"]
    assert other_api.get("/api/v1/benchmarks/").json() == {"datasets": [], "rows": []}
