"""Fixtures for the deployment tests: the browser of the browser tests."""

from tests.browser.conftest import browser  # noqa: F401
