"""The result of a training run and how it is saved as a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from inference.numbers import json_safe


@dataclass
class TrainingResult:
    """Weights of the best epoch and what happened on the way there.

    ``history`` has one dict per epoch run: ``epoch, train_loss, val_loss, val_f1, val_iou,
    seconds, eta_s``. ``val_metrics`` are the pooled validation scores of ``best_epoch``
    at its best-F1 threshold (``inference.metrics.scores`` keys, confusion counts, ``threshold``,
    ``f1_at_0.5`` and ``loss``). ``config`` is JSON-safe.
    """

    state_dict: dict[str, torch.Tensor]
    history: list[dict]
    best_epoch: int
    val_metrics: dict
    config: dict
    stopped_early: bool = False
    cancelled: bool = False
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def save_training_checkpoint(
    result: TrainingResult, path: str | Path, *, detector: str, dataset_name: str, trained_on: dict | None = None
) -> str:
    """Write ``result``'s best weights with training metadata; returns the file's SHA-256.

    ``trained_on``: per split, the fingerprints of the pairs trained and validated on, kept in the
    file so that wherever it is registered a run can tell when it scores one of them."""
    from inference.weights import save_checkpoint

    meta = {
        "detector": detector,
        "dataset": dataset_name,
        "input_size": result.config.get("size"),
        "loss": result.config.get("loss"),
        "seed": result.config.get("seed"),
        "best_epoch": result.best_epoch,
        "epochs_run": result.config.get("epochs_run"),
        "val_metrics": json_safe(result.val_metrics),
        "history": json_safe(result.history),
        "config": json_safe(result.config),
    }
    if trained_on is not None:
        meta["trained_on"] = trained_on
    return save_checkpoint(path, result.state_dict, meta)
