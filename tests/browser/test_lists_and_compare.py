"""The runs list and a comparison in headless Chromium: search, filter, pick two runs, compare."""

import re

import pytest

from tests.api.test_lists_and_compare import finished, noisy_pairs, queued
from tests.browser.test_ui import log_in
from tests.factories import UserFactory, make_dataset

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def test_search_and_filter_runs_then_compare_two(new_page, monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    user = UserFactory()
    dataset = make_dataset(user, name="noisy", pairs=noisy_pairs(6, seed=3))
    low = finished(user, dataset, name="low threshold", detectors=("absdiff", "ssim"), threshold=0.15)
    high = finished(user, dataset, name="high threshold", detectors=("absdiff",), threshold=0.45)
    waiting = queued(user, make_dataset(user, name="other", pairs=noisy_pairs(1)), name="waiting one")
    stranger = UserFactory()
    theirs = queued(stranger, make_dataset(stranger, name="noisy", pairs=noisy_pairs(1)), name="low threshold too")

    w = new_page()
    page = w.page
    log_in(w, user.username)
    page.click("nav >> text=Runs")
    page.wait_for_url(re.compile(r"/runs/$"))

    def shown() -> list[int]:
        return [int(i) for i in page.locator("#runs-table tbody tr[data-run-id]").evaluate_all(
            "rows => rows.map(r => r.dataset.runId)")]  # fmt: skip

    assert shown() == [waiting.pk, high.pk, low.pk]
    page.fill("#f-search", "threshold")
    page.click("#f-apply")
    page.wait_for_url(re.compile(r"search=threshold"))
    assert shown() == [high.pk, low.pk] and theirs.pk not in shown()
    page.select_option("#f-detector", "ssim")
    page.click("#f-apply")
    page.wait_for_url(re.compile(r"detector=ssim"))
    assert shown() == [low.pk]
    page.click("text=Clear")
    page.select_option("#f-state", "queued")
    page.click("#f-apply")
    page.wait_for_url(re.compile(r"state=queued"))
    assert shown() == [waiting.pk]
    assert page.locator(f"#pick-{waiting.pk}").is_disabled()  # no leaderboard: cannot be compared
    w.screenshot("lists-01-runs-filtered")

    page.select_option("#f-state", "succeeded")
    page.click("#f-apply")
    page.wait_for_url(re.compile(r"state=succeeded"))
    page.check(f"#pick-{low.pk}")
    page.check(f"#pick-{high.pk}")
    page.click("#compare-selected")
    page.wait_for_url(re.compile(r"/compare/\?runs="))
    assert page.locator("h1").inner_text() == "Compare runs"
    rows = page.locator("#compare-table tbody tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.detector, Number(r.dataset.run)])"
    )
    assert sorted(map(tuple, rows)) == sorted([("absdiff", low.pk), ("absdiff", high.pk), ("ssim", low.pk)])
    # the checkboxes follow the list's order (newest first): the high-threshold run is the baseline
    test_row = page.locator(f"#tests-table tr[data-run='{low.pk}']")
    assert test_row.count() == 1 and re.match(r"^\d\.\d{4}$", test_row.locator(".p-value").inner_text())
    w.screenshot("lists-02-compare")

    page.click("#compared-runs >> text=make baseline")
    page.wait_for_url(re.compile(rf"baseline={low.pk}"))
    assert page.locator(f"#tests-table tr[data-run='{high.pk}']").count() == 1

    page.click("nav >> text=Benchmarks")
    page.wait_for_url(re.compile(r"/benchmarks/$"))
    page.click(f"#benchmark-table a[data-run='{high.pk}']")
    page.wait_for_url(re.compile(rf"/runs/{high.pk}/$"))
    assert w.problems == [], "\n".join(w.problems)
