"""The thesis's summary table of a run (issue 13 item 7): page, CSV and API show the same rows."""

import csv
import io

import numpy as np
import pytest

from experiments.models import Result
from experiments.reporting.thesis_table import THESIS_FIELDS

pytestmark = pytest.mark.django_db


def test_the_api_gives_the_thesis_columns_in_leaderboard_order(api, finished_run):
    board = api.get(f"/api/v1/runs/{finished_run.pk}/leaderboard/").json()
    table = api.get(f"/api/v1/runs/{finished_run.pk}/thesis-table/").json()
    assert [r["detector"] for r in table["rows"]] == [r["detector"] for r in board["rows"]]
    for row, full in zip(table["rows"], board["rows"], strict=True):
        assert row["iou"] == pytest.approx(full["pooled_iou"])
        # time per pair: the median of the latencies stored per pair, computed here with numpy
        latencies = Result.objects.filter(run=finished_run, detector=row["detector"]).values_list(
            "latency_ms", flat=True
        )
        assert row["time_ms"] == pytest.approx(float(np.median([v for v in latencies if v is not None])))
        # memory: the model's own (its own column on the leaderboard); the worker's peak stays beside it
        assert row["memory_mib"] == full["model_memory_mib"]
        assert row["worker_peak_rss_mib"] == pytest.approx(full["peak_memory_mb"])
        assert row["weights_source"] == "none (classical)" and row["measured_here"] is True
    assert list(table["labels"]) == list(THESIS_FIELDS)


def test_the_csv_matches_the_json_and_others_get_404(api, other_api, finished_run):
    table = api.get(f"/api/v1/runs/{finished_run.pk}/thesis-table/").json()
    response = api.get(f"/api/v1/runs/{finished_run.pk}/thesis-table/?format=csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert list(rows[0]) == list(THESIS_FIELDS)
    assert [float(r["iou"]) for r in rows] == pytest.approx([r["iou"] for r in table["rows"]])
    assert other_api.get(f"/api/v1/runs/{finished_run.pk}/thesis-table/").status_code == 404


def test_the_run_page_shows_the_summary_and_its_export(client, user, finished_run):
    client.force_login(user)
    page = client.get(f"/runs/{finished_run.pk}/").content.decode()
    assert 'id="thesis-summary"' in page and "Time per pair (ms, median at batch 1)" in page
    export = client.get(f"/runs/{finished_run.pk}/leaderboard.csv?view=thesis")
    assert export.status_code == 200 and "thesis-table" in export["Content-Disposition"]
    assert export.content.decode().splitlines()[0] == ",".join(THESIS_FIELDS)
