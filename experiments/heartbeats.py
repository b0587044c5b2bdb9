"""The two threads that let workers see each other die: a heartbeat beside a task, and a periodic
check in every worker that acts on work whose heartbeat stopped.

Training jobs (`training.engine`, failed when stale) and leased tasks (`task_leases`, handed out
again when stale) both use them.
"""

import logging
import threading
from collections.abc import Callable

from django.db import connection

logger = logging.getLogger(__name__)


def start_beating(beat: Callable[[], None], every_s: float, name: str) -> Callable[[], None]:
    """A daemon thread that calls `beat()` every `every_s` seconds until the returned function is called."""
    stop = threading.Event()

    def loop():
        try:
            while not stop.wait(every_s):
                try:
                    beat()
                except Exception:
                    logger.warning("heartbeat %s failed", name, exc_info=True)
        finally:
            connection.close()  # this thread's own database connection

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()

    def stop_beating():
        stop.set()
        thread.join(5)

    return stop_beating


def start_periodic(check: Callable[[], object], interval_s: float, name: str) -> threading.Thread:
    """A daemon thread in a worker that calls `check()` every `interval_s` seconds, for the worker's life."""

    never = threading.Event()

    def loop():
        while not never.wait(interval_s):
            try:
                check()
            except Exception:
                logger.warning("periodic check %s failed", name, exc_info=True)
            finally:
                connection.close()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    return thread
