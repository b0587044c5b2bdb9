"""The live threshold and the publication export in headless Chromium: moving the slider shows the
pooled F1 recomputed at that threshold; the downloaded HTML report opens offline without errors."""

import re

import pytest

from experiments.reporting import rethreshold
from experiments.runs import services as run_services
from tests.browser.conftest import Watched
from tests.browser.test_ui import log_in
from tests.factories import UserFactory, make_dataset, run_in_process

pytestmark = [pytest.mark.integration, pytest.mark.browser]

SLIDER_VALUE = "0.0625"  # 16/256: on the slider's steps and on the histograms' exact grid


def pooled_f1_text(page, detector: str) -> str:
    return page.locator(
        f'#leaderboard-table tr[data-detector="{detector}"] td[data-key="pooled_f1"] [data-value]'
    ).inner_text()


def test_the_slider_recomputes_pooled_f1_and_the_report_opens_offline(
    new_page, browser, make_pair_bytes, monkeypatch, tmp_path
):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    owner = UserFactory()
    pairs = [(f"p{i}", *make_pair_bytes(seed=i, box=(5 + 3 * i, 8, 25 + 3 * i, 30))) for i in range(3)]
    dataset = make_dataset(owner, name="slider_set", pairs=pairs)
    experiment = run_services.experiment_create(owner=owner, dataset=dataset, name="slider_run",
                                                detectors=["absdiff", "ssim"], threshold=0.3)  # fmt: skip
    run = run_in_process(run_services.run_start(experiment=experiment))
    expected = rethreshold.recompute_leaderboard(run, float(SLIDER_VALUE))
    expected_f1 = next(r for r in expected["detectors"] if r["detector"] == "absdiff")["pooled"]["f1"]

    w = new_page()
    page = w.page
    log_in(w, owner.username)
    page.goto(f"/runs/{run.pk}/")
    before = pooled_f1_text(page, "absdiff")
    assert (
        before == f"{next(r for r in run.leaderboard['detectors'] if r['detector'] == 'absdiff')['pooled']['f1']:.3f}"
    )
    assert f"{expected_f1:.3f}" != before  # the move must change what is shown
    page.locator("#threshold").fill(SLIDER_VALUE)
    page.wait_for_function(f"() => location.search.includes('threshold={SLIDER_VALUE}')")
    page.wait_for_function(
        "([sel, text]) => document.querySelector(sel).textContent === text",
        arg=[
            '#leaderboard-table tr[data-detector="absdiff"] td[data-key="pooled_f1"] [data-value]',
            f"{expected_f1:.3f}",
        ],
    )
    assert pooled_f1_text(page, "absdiff") == f"{expected_f1:.3f}"
    # the pooled interval and the rank group follow the slider too
    expected_row = next(r for r in expected["detectors"] if r["detector"] == "absdiff")
    low, high = expected_row["ci"]["pooled_f1"]
    row = page.locator('#leaderboard-table tr[data-detector="absdiff"]')
    assert row.locator('td[data-key="pooled_f1"] [data-ci]').inner_text() == f"[{low:.3f}, {high:.3f}]"
    assert row.locator("[data-rank-group]").inner_text() == f"group {expected_row['rank_group']}"
    assert "recomputed from the stored per-pair score histograms" in page.locator("#threshold-note").inner_text()
    w.screenshot("20-threshold-slider")

    downloads = {}
    for fmt in ("md", "tex", "html"):
        with page.expect_download() as info:
            page.click(f"#report-{fmt}")
        path = tmp_path / f"report.{fmt}"
        info.value.save_as(path)
        downloads[fmt] = path.read_text()
        assert f"threshold {float(SLIDER_VALUE):g}" in downloads[fmt]
    assert r"slider\_run" in downloads["tex"]
    assert f"{expected_f1:.3f}" in downloads["md"]
    assert not re.search(r"https?://", downloads["html"])
    assert page.reload().status == 200 and page.locator("#threshold").input_value() == SLIDER_VALUE  # kept in the URL
    assert w.problems == [], "\n".join(w.problems)

    context = browser.new_context(offline=True)
    try:
        offline = Watched(context.new_page())
        offline.page.goto((tmp_path / "report.html").as_uri())
        offline.page.wait_for_load_state("load")
        assert "slider_run" in offline.page.title()
        assert offline.page.locator("#environment").inner_text().strip().startswith("{")
        assert offline.page.locator("svg").count() == 2
        broken = offline.page.evaluate(
            "() => [...document.images].filter((i) => !i.complete || !i.naturalWidth).length"
        )
        assert broken == 0 and offline.page.locator("img").count() >= 5
        offline.screenshot("21-offline-report")
        assert offline.problems == [], "\n".join(offline.problems)
    finally:
        context.close()
