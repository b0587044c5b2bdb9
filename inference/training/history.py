"""Bookkeeping for one training run: history, best epoch, ETA, early stopping, progress events."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from inference.numbers import finite_or_none

MIN_IMPROVEMENT = 1e-4
PROGRESS_UPDATES_PER_EPOCH = 5

ProgressCallback = Callable[[dict], None]


class RunHistory:
    """What happened so far; keeps the weights of the best epoch (on the CPU)."""

    def __init__(self, *, epochs: int, batches: int, patience: int):
        self.epochs, self.batches, self.patience = epochs, batches, patience
        self.on_progress: ProgressCallback | None = None
        self.history: list[dict] = []
        self.best_epoch = 0
        self.best_f1 = -math.inf
        self.best_metrics: dict = {}
        self.best_state: dict | None = None
        self.stopped_early = False
        self.cancelled = False
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def eta(self, epoch: int, batch: int) -> float:
        done = (epoch - 1) + batch / max(self.batches, 1)
        remaining = self.epochs - done
        return self.elapsed() / done * remaining if done > 0 else math.nan

    def report_batch(self, epoch: int, batch: int, loss: float) -> None:
        every = max(1, self.batches // PROGRESS_UPDATES_PER_EPOCH)
        if self.on_progress is None or (batch % every and batch != self.batches):
            return
        last_f1 = self.history[-1]["val_f1"] if self.history else None
        self.on_progress(
            {
                "stage": "train",
                "epoch": epoch,
                "epochs": self.epochs,
                "batch": batch,
                "batches": self.batches,
                "loss": loss,
                "val_f1": last_f1,
                "eta_s": finite_or_none(self.eta(epoch, batch)),
            }
        )

    def finish_epoch(self, epoch: int, train_loss: float, val: dict, seconds: float, model) -> None:
        val_f1 = val.get("f1")
        record = {
            "epoch": epoch,
            "train_loss": train_loss,
            "val_loss": val.get("loss"),
            "val_f1": val_f1,
            "val_iou": val.get("iou"),
            "seconds": seconds,
            "eta_s": finite_or_none(self.eta(epoch, self.batches)),
        }
        self.history.append(record)
        # Without validation data the last epoch counts as the best one.
        score = val_f1 if val_f1 is not None and not math.isnan(val_f1) else -train_loss
        if score > self.best_f1 + MIN_IMPROVEMENT or self.best_state is None:
            self.best_f1, self.best_epoch, self.best_metrics = score, epoch, val
            self.best_state = cpu_state(model)
        if self.on_progress is not None:
            self.on_progress({"stage": "epoch", "epochs": self.epochs, **record})

    def should_stop_early(self) -> bool:
        return self.patience > 0 and len(self.history) - self.best_epoch >= self.patience


def cpu_state(model) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}
