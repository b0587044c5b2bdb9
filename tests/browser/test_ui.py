"""The whole web UI in headless Chromium: sign up, upload, run live, leaderboard, gallery, pair."""

import re

import pytest

from experiments.runs import services as run_services
from tests.browser.conftest import Watched
from tests.factories import PASSWORD, UserFactory, make_dataset

pytestmark = [pytest.mark.integration, pytest.mark.browser]


def sign_up(w: Watched, username: str):
    page = w.page
    page.goto("/accounts/sign-up/")
    w.screenshot("01-sign-up")
    page.fill("#id_username", username)
    page.fill("#id_password1", "a long enough test password 1")
    page.fill("#id_password2", "a long enough test password 1")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/$"))


def log_in(w: Watched, username: str):
    w.page.goto("/accounts/login/")
    w.page.fill("#id_username", username)
    w.page.fill("#id_password", PASSWORD)
    w.page.click("main button[type=submit]")
    w.page.wait_for_url(re.compile(r"/$"))


def test_sign_up_upload_run_live_and_look_closely(new_page, celery_worker, make_pair_bytes):
    w = new_page()
    page = w.page
    sign_up(w, "alice")
    assert page.locator("h1").inner_text() == "Dashboard"
    w.screenshot("02-dashboard-empty")

    page.click("text=Datasets")
    page.fill("#id_name", "tiny")
    page.click("#dataset-form button[type=submit]")
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))

    files = []
    for i in range(2):
        a, b, label = make_pair_bytes(seed=i, box=(8, 8, 8 + 10 * (i + 1), 30))
        files += [
            {"name": f"pair{i}_A.png", "mimeType": "image/png", "buffer": a},
            {"name": f"pair{i}_B.png", "mimeType": "image/png", "buffer": b},
            {"name": f"pair{i}_label.png", "mimeType": "image/png", "buffer": label},
        ]
    page.set_input_files("#id_files", files)
    page.wait_for_selector("#upload-preview table")
    assert "2 complete pair(s)" in page.inner_text("#upload-preview")
    w.screenshot("03-upload-preview")
    page.click("#upload-submit")
    page.wait_for_url(re.compile(r"/import/"))
    assert "2 pairs ready" in " ".join(page.inner_text("#report-summary").split())
    w.screenshot("04-validation-report")
    page.click("#confirm-import")
    page.wait_for_url(re.compile(r"/datasets/\d+/$"))
    assert page.locator("#pairs tbody tr").count() == 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('#pairs img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    w.screenshot("05-dataset")

    page.click("text=Compare detectors on this dataset")
    page.check("#det-absdiff")
    page.check("#det-ssim")
    page.fill("#id_input_size", "64")
    assert page.inner_text("#cost-total") != "—"
    w.screenshot("06-new-experiment")
    page.press("#id_input_size", "Tab")  # leave the field as a person would before clicking
    page.click("#experiment-form button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    page.evaluate("() => { window.__sameDocument = true; }")
    page.wait_for_function(
        "() => document.getElementById('run-state').textContent === 'succeeded'"
        " && document.getElementById('run-progress').value === document.getElementById('run-progress').max",
        timeout=120_000,
    )
    assert page.inner_text("#run-percent") == "100%"
    page.wait_for_selector("#leaderboard-table", timeout=20_000)
    assert page.evaluate("() => window.__sameDocument") is True, "the page reloaded"
    assert sorted(
        page.locator("#leaderboard-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.detector)")
    ) == [
        "absdiff",
        "ssim",
    ]
    page.wait_for_function("() => document.querySelector('#scatter-chart').width > 0")
    w.screenshot("07-run-finished-leaderboard")

    page.select_option("#baseline", "ssim")
    page.wait_for_url(re.compile(r"baseline=ssim"))
    assert page.locator('tr.baseline[data-detector="ssim"]').count() == 1
    page.click("#leaderboard-table th a:has-text('Latency p50')")
    page.wait_for_url(re.compile(r"sort=latency_ms_p50"))
    w.screenshot("08-leaderboard-sorted")

    page.click("#gallery-link")
    page.wait_for_url(re.compile(r"/gallery/"))
    assert page.locator("[data-gallery-item]").count() == 2
    w.screenshot("09-gallery")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/pairs/\d+/"))
    page.wait_for_selector("img-comparison-slider.rendered")
    assert page.locator("img[data-heat]").count() == 2
    page.wait_for_function(
        "() => [...document.querySelectorAll('img[data-heat]')].every(i => i.style.width.endsWith('%'))"
    )
    page.locator("#opacity").evaluate("el => { el.value = 30; el.dispatchEvent(new Event('input')); }")
    assert (
        page.evaluate("() => getComputedStyle(document.getElementById('heatmaps')).getPropertyValue('--heat-opacity')")
        == "0.3"
    )
    viewport = page.locator("[data-viewport]").first
    viewport.hover()
    page.mouse.wheel(0, -300)
    transforms = page.locator("[data-layer]").evaluate_all("ls => ls.map(l => l.style.transform)")
    assert len(set(transforms)) == 1 and "scale(1)" not in transforms[0], transforms
    w.screenshot("10-pair-detail")
    page.keyboard.press("ArrowRight")  # to the next pair in the gallery ordering, or stays on the last
    page.wait_for_load_state()

    assert w.problems == [], "\n".join(w.problems)


def test_another_users_pages_images_and_sockets_are_refused(new_page, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    owner = UserFactory()
    dataset = make_dataset(owner, pairs=[("p", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=owner, dataset=dataset, name="private", detectors=["absdiff"])
    run = run_services.run_start(experiment=experiment)
    pair = dataset.pairs.get()
    intruder = UserFactory()

    w = new_page()
    w.expect_errors = True  # the 404s and the refused socket are the point of this test
    log_in(w, intruder.username)
    for url in (
        f"/datasets/{dataset.pk}/",
        f"/runs/{run.pk}/",
        f"/runs/{run.pk}/gallery/",
        f"/runs/{run.pk}/pairs/{pair.pk}/",
        f"/runs/{run.pk}/status/",
        f"/media/{pair.image_a}",
    ):
        assert w.page.goto(url).status == 404, url
    outcome = w.page.evaluate(
        """(path) => new Promise((resolve) => {
             const socket = new WebSocket(`ws://${location.host}${path}`);
             let opened = false;
             socket.onopen = () => { opened = true; };
             socket.onmessage = (m) => resolve('message: ' + m.data);
             socket.onclose = () => resolve(opened ? 'opened then closed' : 'refused');
           })""",
        f"/ws/runs/{run.pk}/",
    )
    assert outcome == "refused"
    image_status = w.page.evaluate(f"() => fetch('/media/{pair.image_b}').then(r => r.status)")
    assert image_status == 404
    w.screenshot("11-another-users-run-404")

    owner_view = new_page()
    log_in(owner_view, owner.username)
    assert owner_view.page.goto(f"/runs/{run.pk}/").status == 200
    assert owner_view.page.request.get(f"/media/{pair.image_a}").status == 200
