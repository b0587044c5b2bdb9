"""Headless Chromium (Debian's, never a downloaded browser) against a real daphne and worker.

Every page a test opens is watched: a console error, an uncaught page error, a failed request or
an HTTP error response fails the test unless the test says it expects one.
"""

from pathlib import Path

import pytest

from tests.live_services import celery_worker, celery_workers, daphne_server, service_env  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"


class Watched:
    """A page plus everything that went wrong on it."""

    def __init__(self, page):
        self.page = page
        self.expect_errors = False
        self.problems: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text} @ {page.url}"))
        page.on("pageerror", lambda e: self.problems.append(f"page error: {e} @ {page.url}"))
        page.on("requestfailed", lambda r: self._failed(r))
        page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))

    def _failed(self, request):
        failure = request.failure or ""
        if "ERR_ABORTED" in failure and request.resource_type in ("document", "fetch", "image"):
            return  # navigation away while something was still loading
        self.problems.append(f"request failed: {request.url} ({failure})")

    def screenshot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def new_page(browser, daphne_server):  # noqa: F811 - the fixture imported above
    contexts = []

    def make() -> Watched:
        context = browser.new_context(base_url=daphne_server, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(20_000)
        contexts.append(context)
        watched.append(Watched(context.new_page()))
        return watched[-1]

    watched: list[Watched] = []
    yield make
    for w in watched:
        if w.problems and not w.expect_errors:
            print("problems seen on", w.page.url, *w.problems, sep="\n  ")
    for context in contexts:
        context.close()
