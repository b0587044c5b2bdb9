"""The daily loop in Chromium at 1400 px: notifications, deleting, the leaderboard's width, the
shortcuts overlay and the dark scheme. Every page must finish without console or request errors."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from experiments import storage
from experiments.models import Run
from experiments.runs import result_pictures
from experiments.runs import services as run_services
from tests.browser.conftest import Watched
from tests.browser.test_ui import log_in
from tests.factories import UserFactory, make_dataset, run_in_process

pytestmark = [pytest.mark.integration, pytest.mark.browser]

# Wraps the page's Notification constructor so the test can see what the page asked the browser to show.
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notifications = [];
  if (!Real) return;
  function Recorder(title, options) {
    window.__notifications.push({ title, body: options && options.body });
    try { return new Real(title, options); } catch (error) { return {}; }
  }
  Object.defineProperty(Recorder, "permission", { get: () => Real.permission });
  Recorder.requestPermission = (...args) => Real.requestPermission(...args);
  window.Notification = Recorder;
})();
"""


@pytest.fixture
def page_at_1400(browser, daphne_server):
    contexts = []

    def make(**options) -> Watched:
        context = browser.new_context(base_url=daphne_server, viewport={"width": 1400, "height": 900}, **options)
        context.set_default_timeout(20_000)
        contexts.append(context)
        return Watched(context.new_page())

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def finished_run(make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)  # run here, not on a worker
    owner = UserFactory()
    pairs = [(f"p{i}", *make_pair_bytes(seed=i, box=(6, 6, 16 + 4 * i, 30))) for i in range(3)]
    dataset = make_dataset(owner, pairs=pairs)
    experiment = run_services.experiment_create(
        owner=owner, dataset=dataset, name="nightly", detectors=["absdiff", "ssim"], input_size=64
    )
    run = off_the_loop(run_in_process, run_services.run_start(experiment=experiment))
    assert run.state == "succeeded", run.error
    return run


def off_the_loop(function, *args, **kwargs):
    """Call `function` in a thread of its own: Playwright keeps an event loop in this one, and the
    channel layer's publish (async_to_sync) refuses to run beside it."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(function, *args, **kwargs).result()


def no_problems(w: Watched):
    assert w.problems == [], "\n".join(w.problems)


def test_a_finished_run_shows_a_toast_and_a_system_notification(page_at_1400, make_pair_bytes, monkeypatch):
    monkeypatch.setattr("experiments.outbox.send_run", lambda run_id: None)
    owner = UserFactory()
    dataset = make_dataset(owner, pairs=[("p0", *make_pair_bytes())])
    experiment = run_services.experiment_create(owner=owner, dataset=dataset, name="overnight", detectors=["absdiff"])
    run = run_services.run_start(experiment=experiment)

    w = page_at_1400(permissions=["notifications"])
    w.page.add_init_script(RECORD_NOTIFICATIONS)
    log_in(w, owner.username)
    w.page.goto("/datasets/")
    assert w.page.evaluate("() => Notification.permission") == "granted"
    assert w.page.locator("#notify-me").is_hidden()  # already allowed: nothing to ask
    w.page.wait_for_selector("#toasts[data-socket=open]", state="attached")

    off_the_loop(run_in_process, run)  # the engine's steps; its last transition publishes `finished`
    toast = w.page.locator("#toasts .toast[role=status]")
    toast.wait_for()
    assert re.search(rf"Run #{run.pk} \(overnight\) succeeded", toast.inner_text())
    assert toast.locator("a").get_attribute("href") == f"/runs/{run.pk}/"
    calls = w.page.evaluate("() => window.__notifications")
    assert calls == [{"title": "diffplatform", "body": f"Run #{run.pk} (overnight) succeeded"}]
    w.screenshot("daily-01-notification-toast")
    toast.locator("a").click()
    w.page.wait_for_url(re.compile(rf"/runs/{run.pk}/$"))
    no_problems(w)


def test_without_permission_only_the_toast_shows_and_notify_me_is_offered(page_at_1400, finished_run):
    w = page_at_1400()
    w.page.add_init_script(RECORD_NOTIFICATIONS)
    log_in(w, finished_run.experiment.owner.username)
    assert w.page.evaluate("() => Notification.permission") == "default"
    assert w.page.locator("#notify-me").is_visible()
    w.page.wait_for_selector("#toasts[data-socket=open]", state="attached")
    clone = run_services.run_clone(run=finished_run)
    off_the_loop(run_services.run_cancel, run=clone)  # a queued run cancelled at once: finished, state cancelled
    w.page.locator("#toasts .toast").wait_for()
    assert f"Run #{clone.pk}" in w.page.inner_text("#toasts") and "cancelled" in w.page.inner_text("#toasts")
    assert w.page.evaluate("() => window.__notifications") == []
    no_problems(w)


def test_delete_a_run_from_the_ui(page_at_1400, finished_run):
    run = finished_run
    for pair in run.experiment.dataset.pairs.all():  # the run's own files: consensus maps, drawn as pair pages do
        result_pictures.read(result_pictures.consensus_key(run.pk, pair.pk))
    files = storage.list_all_keys(storage.run_key(run.pk))
    assert files
    w = page_at_1400()
    log_in(w, run.experiment.owner.username)
    w.page.goto(f"/runs/{run.pk}/")
    w.page.click("#run-delete-link")
    w.page.wait_for_url(re.compile(rf"/runs/{run.pk}/delete/$"))
    summary = " ".join(w.page.inner_text("#delete-summary").split())
    assert "6 results" in summary and f"{len(files)} stored files" in summary
    assert Run.objects.filter(pk=run.pk).exists()  # the confirmation page deleted nothing
    w.screenshot("daily-02-confirm-delete-run")
    w.page.click("#delete-form button[type=submit]")
    w.page.wait_for_url(re.compile(rf"/experiments/{run.experiment_id}/$"))
    assert f"Run #{run.pk}" in w.page.inner_text("main .message")
    assert not Run.objects.filter(pk=run.pk).exists()
    assert storage.list_all_keys(storage.run_key(run.pk)) == []
    no_problems(w)


def test_the_leaderboard_fits_at_1400_px_and_scrolls_inside_its_card(page_at_1400, finished_run):
    w = page_at_1400()
    log_in(w, finished_run.experiment.owner.username)
    w.page.goto(f"/runs/{finished_run.pk}/")
    w.page.wait_for_selector("#leaderboard-table")
    sizes = w.page.evaluate(
        """() => {
             const table = document.getElementById('leaderboard-table');
             const box = table.closest('.scroll');
             const card = table.closest('.card').getBoundingClientRect();
             return { page: document.scrollingElement.scrollWidth, window: window.innerWidth,
                      overflow: getComputedStyle(box).overflowX, cardRight: card.right,
                      boxScroll: box.scrollWidth, boxWidth: box.clientWidth };
           }"""
    )
    assert sizes["page"] <= sizes["window"], sizes
    assert sizes["overflow"] == "auto" and sizes["cardRight"] <= sizes["window"], sizes
    w.screenshot("daily-03-leaderboard-1400")
    if sizes["boxScroll"] > sizes["boxWidth"]:  # wider than its card: the detector column stays in view
        pinned = w.page.evaluate(
            """() => {
                 const box = document.getElementById('leaderboard-table').closest('.scroll');
                 box.scrollLeft = box.scrollWidth;
                 const cell = box.querySelector('tbody th[scope=row]').getBoundingClientRect();
                 return { cell: cell.left, box: box.getBoundingClientRect().left, scrolled: box.scrollLeft };
               }"""
        )
        assert pinned["scrolled"] > 0 and abs(pinned["cell"] - pinned["box"]) < 2, pinned
    no_problems(w)


def test_question_mark_opens_and_esc_closes_the_shortcuts(page_at_1400, finished_run):
    w = page_at_1400()
    log_in(w, finished_run.experiment.owner.username)
    w.page.goto(f"/runs/{finished_run.pk}/gallery/")
    dialog = w.page.locator("#shortcuts")
    assert not dialog.is_visible()
    w.page.keyboard.press("?")
    dialog.wait_for(state="visible")
    assert w.page.evaluate("() => document.getElementById('shortcuts').open")
    assert w.page.get_by_role("dialog", name="Keyboard shortcuts").is_visible()
    assert dialog.locator("section[data-when='[data-gallery-item]']").is_visible()  # this page's keys
    assert dialog.locator("section[data-when='#dropzone']").is_hidden()  # not this page's
    w.screenshot("daily-04-shortcuts")
    w.page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    w.page.keyboard.press("?")
    dialog.wait_for(state="visible")
    w.page.keyboard.press("?")  # toggles
    dialog.wait_for(state="hidden")
    no_problems(w)


def contrast(a: str, b: str) -> float:
    def luminance(css: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


@pytest.mark.parametrize("scheme", ["dark", "light"])
def test_the_colour_scheme_follows_the_system(page_at_1400, finished_run, scheme):
    w = page_at_1400(color_scheme=scheme)
    log_in(w, finished_run.experiment.owner.username)
    w.page.goto(f"/runs/{finished_run.pk}/")
    w.page.wait_for_selector("#leaderboard-table")
    colours = w.page.evaluate(
        """() => {
             const style = (sel, prop) => getComputedStyle(document.querySelector(sel))[prop];
             return { body: style('body', 'backgroundColor'), text: style('body', 'color'),
                      card: style('.card', 'backgroundColor'), link: style('main a:not(.button)', 'color'),
                      muted: style('.muted', 'color'), chip: style('.chip[class*=state-]', 'color'),
                      chipGround: style('.chip[class*=state-]', 'backgroundColor') };
           }"""
    )
    dark_background = colours["body"] == "rgb(18, 20, 24)"
    assert dark_background == (scheme == "dark"), colours
    for name in ("text", "link", "muted"):
        for ground in ("body", "card"):
            assert contrast(colours[name], colours[ground]) >= 4.5, (name, ground, colours)
    assert contrast(colours["chip"], colours["chipGround"]) >= 4.5, colours  # the run's state chip
    if scheme == "dark":
        assert colours["link"] == "rgb(86, 180, 233)"  # Okabe-Ito sky blue
    w.screenshot(f"daily-05-scheme-{scheme}")
    no_problems(w)


def test_the_pair_form_shows_upload_progress_then_the_servers_answer(page_at_1400, make_pair_bytes):
    owner = UserFactory()
    dataset = make_dataset(owner, pairs=[("first", *make_pair_bytes(seed=1))])
    w = page_at_1400()
    log_in(w, owner.username)
    w.page.goto(f"/datasets/{dataset.pk}/")
    # The page is rewritten in place (same window), so what this records survives the answer.
    w.page.evaluate(
        """() => {
             const send = XMLHttpRequest.prototype.send;
             XMLHttpRequest.prototype.send = function (body) {
               this.upload.addEventListener('progress', (e) => { window.__uploadProgress = [e.loaded, e.total]; });
               return send.call(this, body);
             };
           }"""
    )
    a, b, label = make_pair_bytes(seed=2)
    w.page.click("#manual-pair summary")
    form = w.page.locator("#pair-upload")
    form.locator("[name=name]").fill("by-hand")
    form.locator("[name=image_a]").set_input_files({"name": "a.png", "mimeType": "image/png", "buffer": a})
    form.locator("[name=image_b]").set_input_files({"name": "b.png", "mimeType": "image/png", "buffer": b})
    form.locator("[name=label]").set_input_files({"name": "l.png", "mimeType": "image/png", "buffer": label})
    form.locator("button[type=submit]").click()
    w.page.wait_for_function(
        "(text) => document.body && document.body.innerText.includes(text)", arg="Pair 'by-hand' added."
    )
    loaded, total = w.page.evaluate("() => window.__uploadProgress")
    assert loaded == total and total > len(a) + len(b)  # the whole multipart body was reported sent
    assert w.page.url.endswith(f"/datasets/{dataset.pk}/")
    assert w.page.locator("#pairs tbody tr").count() == 2
    assert dataset.pairs.filter(name="by-hand").exists()
    no_problems(w)
