"""The leaderboard at `?threshold=` and the publication export through the API and the pages:
recomputed figures, 400 for thresholds outside (0, 1), per-user isolation."""

import csv
import io

import pytest
from django.test import Client

from experiments.reporting import rethreshold
from tests.factories import PASSWORD

pytestmark = pytest.mark.django_db

RUN_THRESHOLD = 0.3  # the `finished_run` fixture's (off the grid: the stored leaderboard is returned for it)


def pooled_f1(payload, detector):
    return next(r for r in payload["rows"] if r["detector"] == detector)["pooled_f1"]


def test_the_leaderboard_at_another_threshold_is_recomputed_and_says_so(api, finished_run):
    stored = api.get(f"/api/v1/runs/{finished_run.pk}/leaderboard/").json()
    assert stored["threshold"]["at_run_threshold"] and stored["threshold"]["threshold"] == RUN_THRESHOLD
    own = api.get(f"/api/v1/runs/{finished_run.pk}/leaderboard/?threshold={RUN_THRESHOLD}").json()
    assert own["rows"] == stored["rows"]
    moved = api.get(f"/api/v1/runs/{finished_run.pk}/leaderboard/?threshold=0.0625")
    assert moved.status_code == 200
    body = moved.json()
    assert body["threshold"]["threshold"] == 0.0625 and not body["threshold"]["rounded_to_grid"]
    expected = rethreshold.recompute_leaderboard(finished_run, 0.0625)
    for detector in ("absdiff", "ssim"):
        row = next(r for r in expected["detectors"] if r["detector"] == detector)
        assert pooled_f1(body, detector) == pytest.approx(row["pooled"]["f1"])
    assert pooled_f1(body, "absdiff") != pytest.approx(pooled_f1(stored, "absdiff"))
    rounded = api.get(f"/api/v1/runs/{finished_run.pk}/leaderboard/?threshold=0.31").json()["threshold"]
    assert rounded["rounded_to_grid"] and rounded["requested"] == 0.31 and rounded["threshold"] == 1270 / 4096


def test_the_csv_export_honours_the_threshold(api, finished_run):
    response = api.get(f"/api/v1/runs/{finished_run.pk}/leaderboard/?format=csv&threshold=0.0625")
    rows = {r["detector"]: r for r in csv.DictReader(io.StringIO(response.content.decode()))}
    expected = rethreshold.recompute_leaderboard(finished_run, 0.0625)
    row = next(r for r in expected["detectors"] if r["detector"] == "absdiff")
    assert float(rows["absdiff"]["pooled_f1"]) == pytest.approx(row["pooled"]["f1"])


@pytest.mark.parametrize("value", ["0", "1", "-1", "2", "abc"])
def test_thresholds_outside_zero_one_are_a_400_saying_what_to_fix(api, finished_run, value):
    for path in ("leaderboard/", "report.md", "charts/pr.svg"):
        response = api.get(f"/api/v1/runs/{finished_run.pk}/{path}?threshold={value}")
        assert response.status_code == 400, path
        assert "threshold" in response.json()["error"]["message"].lower()


def test_reports_and_charts_through_the_api(api, finished_run):
    expected_types = {"md": "text/markdown", "tex": "application/x-tex", "html": "text/html"}
    for fmt, content_type in expected_types.items():
        response = api.get(f"/api/v1/runs/{finished_run.pk}/report.{fmt}?threshold=0.5")
        assert response.status_code == 200
        assert response["Content-Type"].startswith(content_type)
        assert "threshold 0.5" in response.content.decode()
    assert api.get(f"/api/v1/runs/{finished_run.pk}/charts/pr.svg")["Content-Type"] == "image/svg+xml"
    png = api.get(f"/api/v1/runs/{finished_run.pk}/charts/scatter.png")
    assert png["Content-Type"] == "image/png" and png.content.startswith(b"\x89PNG")
    assert api.get(f"/api/v1/runs/{finished_run.pk}/charts/pie.svg").status_code == 404


def test_another_users_run_is_a_404_everywhere(other_api, other_user, finished_run):
    for path in ("leaderboard/?threshold=0.5", "report.md", "report.tex", "report.html", "charts/pr.svg"):
        assert other_api.get(f"/api/v1/runs/{finished_run.pk}/{path}").status_code == 404, path
    page = Client()
    assert page.login(username=other_user.username, password=PASSWORD)
    for path in (
        "report.html",
        "report.md",
        "threshold.json?threshold=0.5",
        "charts/pr.png",
        "leaderboard.csv?threshold=0.5",
    ):
        assert page.get(f"/runs/{finished_run.pk}/{path}").status_code == 404, path


def test_the_pages_serve_the_slider_json_and_exports(user, finished_run):
    page = Client()
    assert page.login(username=user.username, password=PASSWORD)
    data = page.get(f"/runs/{finished_run.pk}/threshold.json?threshold=0.0625").json()
    assert data["threshold"]["threshold"] == 0.0625
    expected = rethreshold.recompute_leaderboard(finished_run, 0.0625)
    row = next(r for r in expected["detectors"] if r["detector"] == "absdiff")
    assert pooled_f1(data, "absdiff") == pytest.approx(row["pooled"]["f1"])
    assert {p["detector"] for p in data["points"]} == {"absdiff", "ssim"}
    assert page.get(f"/runs/{finished_run.pk}/threshold.json?threshold=7").status_code == 400
    detail = page.get(f"/runs/{finished_run.pk}/?threshold=0.0625").content.decode()
    assert 'id="threshold"' in detail and 'value="0.0625"' in detail
    assert f"/runs/{finished_run.pk}/report.html?threshold=0.0625" in detail
    exported = page.get(f"/runs/{finished_run.pk}/leaderboard.json?threshold=0.0625").json()
    assert exported["threshold"]["threshold"] == 0.0625
    report = page.get(f"/runs/{finished_run.pk}/report.tex")
    assert report.status_code == 200 and "\\begin{tabular}" in report.content.decode()
