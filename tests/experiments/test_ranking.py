"""A run through the engine carries intervals on its ranking key and rank groups: stored with the
leaderboard, shown by the API (JSON and CSV), the page, the compare page, the benchmark matrix and the
report, recomputed at another threshold, and equal to the documented resampling of the stored counts."""

import csv
import io

import numpy as np
import pytest

from experiments.reporting import report
from tests.api.conftest import token_client
from tests.api.test_lists_and_compare import finished, noisy_pairs
from tests.factories import make_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(user, no_queue):
    return finished(user, make_dataset(user, pairs=noisy_pairs(count=16, seed=3)), threshold=0.3)


def _documented_interval(counts: list[tuple], *, seed: int, resamples: int) -> dict[str, list[float]]:
    """docs/engine.md: pairs sorted by id, resample b = `default_rng(seed).integers(0, n, size=n)` in order."""
    counts = np.asarray(counts, dtype=float)
    rng = np.random.default_rng(seed)
    f1, iou = [], []
    for _ in range(resamples):
        tp, fp, fn = counts[rng.integers(0, len(counts), size=len(counts))].sum(axis=0)
        f1.append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 1.0)
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else 1.0)
    return {"f1": np.percentile(f1, [2.5, 97.5]).tolist(), "iou": np.percentile(iou, [2.5, 97.5]).tolist()}


def _counts(run, detector: str) -> list[tuple]:
    results = run.results.filter(detector=detector).order_by("pair_id")
    return [(r.metrics["tp"], r.metrics["fp"], r.metrics["fn"]) for r in results]


def test_the_api_leaderboard_has_pooled_intervals_and_rank_groups_from_the_stored_counts(run, user):
    body = token_client(user).get(f"/api/v1/runs/{run.pk}/leaderboard/").json()
    ranking = body["leaderboard"]["ranking"]
    assert ranking["resamples"] == 2000 and ranking["seed"] == run.experiment.seed
    assert ranking["family"] == "all pairs of ranked detectors" and ranking["adjustment"] == "Holm"
    for column in ("rank_group", "pooled_f1_ci_low", "pooled_f1_ci_high", "pooled_iou_ci_low", "pooled_iou_ci_high"):
        assert column in body["columns"]
    for row in body["rows"]:
        expected = _documented_interval(_counts(run, row["detector"]), seed=ranking["seed"], resamples=2000)
        assert [row["pooled_f1_ci_low"], row["pooled_f1_ci_high"]] == pytest.approx(expected["f1"], abs=1e-9)
        assert [row["pooled_iou_ci_low"], row["pooled_iou_ci_high"]] == pytest.approx(expected["iou"], abs=1e-9)
        assert row["pooled_f1_ci_low"] <= row["pooled_f1"] <= row["pooled_f1_ci_high"]
    (comparison,) = ranking["comparisons"]
    assert comparison["p_holm"] == comparison["p"]  # one comparison: Holm changes nothing
    first, second = body["rows"]
    assert [first["rank"], second["rank"]] == [1, 2] and comparison["a"] == first["detector"]
    expected_groups = ["1", "2"] if comparison["p_holm"] < 0.05 else ["1-2", "1-2"]
    assert [first["rank_group"], second["rank_group"]] == expected_groups

    csv_body = token_client(user).get(f"/api/v1/runs/{run.pk}/leaderboard/?format=csv").content.decode()
    records = list(csv.DictReader(io.StringIO(csv_body)))
    assert [r["rank_group"] for r in records] == expected_groups
    assert float(records[0]["pooled_f1_ci_low"]) == pytest.approx(first["pooled_f1_ci_low"])


def test_another_threshold_recomputes_the_intervals_and_groups(run, user):
    at_run = token_client(user).get(f"/api/v1/runs/{run.pk}/leaderboard/").json()
    other = token_client(user).get(f"/api/v1/runs/{run.pk}/leaderboard/?threshold=0.75").json()
    assert other["threshold"]["threshold"] == 0.75
    before = {r["detector"]: (r["pooled_f1_ci_low"], r["pooled_f1_ci_high"]) for r in at_run["rows"]}
    for row in other["rows"]:
        assert row["pooled_f1_ci_low"] <= row["pooled_f1"] <= row["pooled_f1_ci_high"]
        assert (row["pooled_f1_ci_low"], row["pooled_f1_ci_high"]) != before[row["detector"]]
        assert row["rank_group"] is not None
    assert other["leaderboard"]["ranking"]["order"] == [r["detector"] for r in other["rows"]]


def test_the_threshold_slider_gets_the_rank_groups_and_intervals_at_its_threshold(run, user, client):
    client.force_login(user)
    slider = client.get(f"/runs/{run.pk}/threshold.json?threshold=0.75").json()
    api = token_client(user).get(f"/api/v1/runs/{run.pk}/leaderboard/?threshold=0.75").json()
    fields = ("rank", "rank_group", "pooled_f1_ci_low", "pooled_f1_ci_high")
    slider_rows = {r["detector"]: [r[f] for f in fields] for r in slider["rows"]}
    assert slider_rows == {r["detector"]: [r[f] for f in fields] for r in api["rows"]}
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert page.count("data-rank>") == len(slider_rows)  # the slider's script updates these in place


def test_page_compare_benchmarks_and_report_show_the_groups(run, user, client):
    client.force_login(user)
    stored = {r["detector"]: r for r in run.leaderboard["detectors"]}
    page = client.get(f"/runs/{run.pk}/").content.decode()
    assert "data-rank-group" in page and 'id="rank-group-rule"' in page
    for row in stored.values():
        assert f"group {row['rank_group']}" in page

    other = finished(user, run.experiment.dataset, name="again", threshold=0.5)
    compared = token_client(user).get(f"/api/v1/compare/?runs={run.pk},{other.pk}").json()
    assert all(r["rank_group"] and r["pooled_f1_ci_low"] is not None for r in compared["rows"])
    assert "data-rank-group" in client.get(f"/compare/?runs={run.pk},{other.pk}").content.decode()

    matrix = token_client(user).get("/api/v1/benchmarks/").json()
    for row in matrix["rows"]:
        (cell,) = row["cells"]
        newest = {r["detector"]: r for r in other.leaderboard["detectors"]}[row["detector"]]
        assert cell["run"] == other.pk and cell["rank_group"] == newest["rank_group"]
        assert cell["f1_ci"] == newest["ci"]["pooled_f1"] and cell["iou_ci"] == newest["ci"]["pooled_iou"]
    assert "data-rank-group" in client.get("/benchmarks/").content.decode()

    markdown = report.markdown(run)
    assert "| Rank group |" in markdown
    for name, row in stored.items():
        line = next(line for line in markdown.splitlines() if line.startswith(f"| {name} |"))
        low, high = row["ci"]["pooled_f1"]
        assert f"| {row['rank_group']} |" in line and f"[{low:.3f}, {high:.3f}]" in line


def test_an_unlabelled_run_has_no_ranking(user, no_queue, make_pair_bytes):
    pairs = [(f"u{i}", *make_pair_bytes(seed=i)[:2], None) for i in range(3)]
    run = finished(user, make_dataset(user, pairs=pairs))
    assert run.leaderboard["ranking"] is None
    assert all(r.get("rank_group") is None and "pooled_f1" not in r["ci"] for r in run.leaderboard["detectors"])


def test_the_number_of_resamples_is_a_setting_with_a_floor(user, no_queue, settings):
    from tests.diffplatform.test_celery_settings import local_settings

    settings.RANKING_BOOTSTRAP_RESAMPLES = 1200
    run = finished(user, make_dataset(user, pairs=noisy_pairs(count=5, seed=1)))
    assert run.leaderboard["ranking"]["resamples"] == 1200
    refused = local_settings(RANKING_BOOTSTRAP_RESAMPLES="500")
    assert refused.returncode != 0 and "RANKING_BOOTSTRAP_RESAMPLES must be 1000 or more, got 500" in refused.stderr
