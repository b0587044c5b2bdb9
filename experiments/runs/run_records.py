"""What a detector task writes on its run while it works: progress, its own record (under the run's
row lock, so concurrent detector tasks never overwrite each other), and failures."""

import logging
import time

from django.db import transaction

from experiments.live.progress import publish_run_progress
from experiments.models import Run

logger = logging.getLogger(__name__)


PERSIST_EVERY_S = 1.0
PUBLISH_EVERY_S = 0.5  # a live bar moves twice a second; each event costs a channel-layer round trip


class ProgressReporter:
    """Counts one detector's pairs; persists at most once a second and publishes at most twice a second
    (always when it persists, and the last count)."""

    def __init__(self, run_id: int, detector: str, total: int, done: int):
        self.run_id, self.detector, self.total, self.done = run_id, detector, total, done
        self.started = time.monotonic()
        self.started_done = done
        self.last_persist = 0.0
        self.last_publish = 0.0

    def advance(self, count: int, stage: str = "detecting") -> None:
        self.done += count
        elapsed = time.monotonic() - self.started
        rate = (self.done - self.started_done) / elapsed if elapsed > 0 else 0.0
        state = {
            "done": self.done,
            "total": self.total,
            "stage": stage,
            "pairs_per_s": round(rate, 3),
            "eta_s": round((self.total - self.done) / rate, 1) if rate > 0 else None,
        }
        force = self.done >= self.total
        if force or time.monotonic() - self.last_persist >= PERSIST_EVERY_S:
            overall = _persist_detector_progress(self.run_id, self.detector, state)
            self.last_persist = time.monotonic()
        else:
            overall = None
            if stage == "detecting" and time.monotonic() - self.last_publish < PUBLISH_EVERY_S:
                return
        self.last_publish = time.monotonic()
        publish_run_progress(
            self.run_id, {"detector": self.detector, **state, **({"overall": overall} if overall else {})}
        )


def _persist_detector_progress(run_id: int, detector: str, state: dict) -> dict:
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        detectors = run.progress.setdefault("detectors", {})
        detectors[detector] = state
        run.progress["stage"] = state["stage"]
        run.progress_done = sum(d["done"] for d in detectors.values())
        run.save(update_fields=["progress", "progress_done"])
    return {"done": run.progress_done, "total": run.progress_total}


def update_detector_record(run_id: int, detector: str, update) -> None:
    """Change one detector's record in `Run.environment["detector_info"]` under the run's row lock,
    so detector tasks running at the same time never overwrite each other's records."""
    with transaction.atomic():
        run = Run.objects.select_for_update().get(pk=run_id)
        update(run.environment, run.environment.setdefault("detector_info", {}).setdefault(detector, {}))
        run.save(update_fields=["environment"])


def record_detector(run_id: int, detector: str, info: dict) -> None:
    def update(environment: dict, record: dict) -> None:
        environment.setdefault("weights", {})[detector] = info["weights"]
        environment.setdefault("weights_sha256", {})[detector] = info.get("weights_sha256")
        record.update(info)

    update_detector_record(run_id, detector, update)


def failed_detectors(run: Run) -> dict[str, str]:
    """{detector: reason} of the run's detectors whose task failed (recorded by `fail_detector`)."""
    entries = (run.progress or {}).get("detectors", {})
    return {
        name: entries[name]["failed"]
        for name in run.experiment.detectors
        if isinstance(entries.get(name), dict) and entries[name].get("failed")
    }


def failure_summary(failed: dict[str, str]) -> str:
    return "Failed detectors: " + "; ".join(f"{name}: {reason}" for name, reason in failed.items())
