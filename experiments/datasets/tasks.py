"""Periodic work of every worker for datasets: staged uploads that expired are removed.

Like the outbox flusher (`experiments.outbox`), a daemon thread started when the worker is ready,
so no Celery beat is needed.
"""

import logging
import threading

from celery.signals import worker_ready
from django.conf import settings
from django.db import connection

from experiments.datasets import staging

logger = logging.getLogger(__name__)


def sweep_staged_uploads() -> int:
    try:
        return staging.expire_staged()
    except Exception:
        logger.warning("the sweep of expired staged uploads failed", exc_info=True)
        return 0


def start_staged_upload_sweep(interval_s: float | None = None) -> threading.Event:
    """A daemon thread that sweeps every `STAGED_UPLOAD_SWEEP_S`; set the returned event to stop it."""
    interval = interval_s or settings.STAGED_UPLOAD_SWEEP_S
    stop = threading.Event()

    def loop():
        while not stop.wait(interval):
            sweep_staged_uploads()
            connection.close()

    threading.Thread(target=loop, name="staged-upload-sweep", daemon=True).start()
    return stop


@worker_ready.connect
def sweep_staged_uploads_while_running(**kwargs) -> None:
    sweep_staged_uploads()
    start_staged_upload_sweep()
