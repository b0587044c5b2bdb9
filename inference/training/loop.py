"""The training loop: ``train_detector`` and the optimiser steps and validation it runs.

AdamW with a one-cycle learning-rate schedule (warm-up to ``lr`` over the first
``WARMUP_FRACTION`` of the steps, then cosine decay); validation after every epoch at the
best pooled-F1 threshold (on the grid ``m / (VALIDATION_BINS - 1)``); the best epoch's weights are kept and
training stops early when validation F1 has not improved for ``patience`` epochs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

import inference.training.data as training_data
from inference import metrics
from inference.runtime import seed_everything
from inference.training.checkpoint import TrainingResult
from inference.training.data import Triple, as_triple, to_tensors, training_sample, validation_tiles
from inference.training.history import ProgressCallback, RunHistory, cpu_state
from inference.training.losses import CONTRASTIVE_MARGIN, CONTRASTIVE_WEIGHT, bce_dice_loss, contrastive_patch_loss
from inference.training.model_setup import (
    build_for_training,
    check_arguments,
    embedding_function,
    starting_weights,
    training_autocast,
)
from inference.training_config import training_config

WARMUP_FRACTION = 0.3
VALIDATION_BINS = 256  # validation scores pooled in levels round(p * 255): thresholds on the grid m / 255


def train_detector(
    name: str,
    train_pairs: Sequence,
    val_pairs: Sequence,
    *,
    device: str = "auto",
    init_weights: str | Path | None = "auto",
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    **options,
) -> TrainingResult:
    """Train detector ``name`` and return the weights of its best validation epoch.

    Pairs are objects with ``.a, .b, .label`` (e.g. ``SyntheticPair``) or ``(a, b, label)``
    tuples: RGB uint8 images, label bool or 0/255. Training images larger than ``size`` are
    randomly cropped to ``size``, smaller ones resized; validation images are cut into
    ``size`` tiles (or resized when smaller). ``init_weights``: ``"auto"`` (ImageNet backbone
    from the torch cache when present, else random), ``None`` (random) or a checkpoint path
    (fine-tuning); the ``init`` option says the same in words ("auto", "imagenet": the ImageNet
    backbone or ``WeightsUnavailable``, "scratch": random) and may not contradict it. ``on_progress(dict)`` is called every few batches (``stage="train"``) and
    after each epoch (``stage="epoch"``); ``should_stop()`` returning True cancels after the
    current batch, keeping the best weights so far. ``options`` are the fields of
    `inference.training_config.TrainingConfig` (epochs, loss, size, seed, batch_size, lr, patience, init);
    the ones not given take its defaults.
    """
    config = training_config(options)
    epochs, loss, size, seed = config.epochs, config.loss, config.size, config.seed
    batch_size, lr, patience = config.batch_size, config.lr, config.patience
    check_arguments(loss, epochs, size, batch_size, train_pairs)
    init_weights = starting_weights(init_weights, config.init)
    seed_everything(seed)
    detector, init_provenance, init_text = build_for_training(name, init_weights, device, size)
    model = detector.model
    embed = embedding_function(name, model) if loss == "triplet" else None
    train_set = [as_triple(p) for p in train_pairs]
    val_set = [tile for p in val_pairs for tile in validation_tiles(as_triple(p), size)]
    run = RunHistory(epochs=epochs, batches=math.ceil(len(train_set) / batch_size), patience=patience)
    run.on_progress = on_progress
    trainer = Trainer(detector, embed, lr=lr, size=size, batch_size=batch_size, seed=seed)
    trainer.schedule(epochs * run.batches)

    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        train_loss = trainer.train_epoch(train_set, epoch, run, should_stop)
        if run.cancelled:
            break
        val = trainer.validate(val_set)
        run.finish_epoch(epoch, train_loss, val, time.perf_counter() - started, model)
        if run.should_stop_early():
            run.stopped_early = True
            break

    model.eval()
    config = {
        "detector": name,
        "loss": loss,
        "size": size,
        "seed": seed,
        "epochs_requested": epochs,
        "epochs_run": len(run.history),
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "init": config.init,
        "optimizer": f"AdamW(weight_decay=1e-4), one-cycle (warm-up {WARMUP_FRACTION:.0%})",
        "augmentation": (
            "paired flips/rot90/crops + nuisance brightness/contrast/blur/noise/shift"
            f" + viewpoint homography of A (p={training_data.WARP_PROBABILITY})"
        ),
        "validation_threshold": "best pooled F1 on the validation tiles",
        "device": str(detector.device),
        "init_weights": init_provenance,
        "init_description": init_text,
        "train_pairs": len(train_set),
        "val_tiles": len(val_set),
        "torch": torch.__version__,
    }
    if loss == "triplet":
        config["contrastive"] = {"margin": CONTRASTIVE_MARGIN, "weight": CONTRASTIVE_WEIGHT}
    return TrainingResult(
        state_dict=run.best_state if run.best_state is not None else cpu_state(model),
        history=run.history,
        best_epoch=run.best_epoch,
        val_metrics=run.best_metrics,
        config=config,
        stopped_early=run.stopped_early,
        cancelled=run.cancelled,
        seconds=run.elapsed(),
    )


class Trainer:
    """One optimisation step after another on a detector's network."""

    def __init__(self, detector, embed, *, lr: float, size: int, batch_size: int, seed: int):
        self.detector, self.embed = detector, embed
        self.size, self.batch_size = size, batch_size
        self.rng = np.random.default_rng(seed)
        self.optimizer = torch.optim.AdamW(detector.model.parameters(), lr=lr, weight_decay=1e-4)
        self.scheduler = None

    def schedule(self, total_steps: int) -> None:
        peak = self.optimizer.param_groups[0]["lr"]
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
            self.optimizer,
            max_lr=peak,
            total_steps=max(total_steps, 1),
            pct_start=WARMUP_FRACTION,
            div_factor=10.0,
            final_div_factor=100.0,
        )

    def train_epoch(self, train_set: list[Triple], epoch: int, run: RunHistory, should_stop) -> float:
        self.detector.model.train()
        losses = []
        order = self.rng.permutation(len(train_set))
        for batch, start in enumerate(range(0, len(order), self.batch_size), start=1):
            if should_stop is not None and should_stop():
                run.cancelled = True
                break
            indices = order[start : start + self.batch_size]
            samples = [training_sample(train_set[i], self.rng, self.size) for i in indices]
            losses.append(self.step(samples))
            run.report_batch(epoch, batch, float(np.mean(losses)))
        return float(np.mean(losses)) if losses else math.nan

    def step(self, samples: list[Triple]) -> float:
        xa, xb, label = to_tensors(self.detector, samples)
        with training_autocast(self.detector.device):
            logits = self.detector.model(xa, xb)
        loss = bce_dice_loss(logits.float(), label)
        if self.embed is not None:
            metric = contrastive_patch_loss(self.embed(xa), self.embed(xb), label)
            loss = loss + CONTRASTIVE_WEIGHT * metric
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    @torch.no_grad()
    def validate(self, val_set: list[Triple]) -> dict:
        """Pooled scores at the best-F1 threshold, F1 at 0.5 and the mean loss; ``{}`` without data."""
        if not val_set:
            return {}
        model = self.detector.model
        model.eval()
        positive = np.zeros(VALIDATION_BINS, np.int64)
        negative = np.zeros(VALIDATION_BINS, np.int64)
        loss_sum = 0.0
        for start in range(0, len(val_set), self.batch_size):
            samples = val_set[start : start + self.batch_size]
            xa, xb, label = to_tensors(self.detector, samples)
            with training_autocast(self.detector.device):
                logits = model(xa, xb).float()
            loss_sum += float(bce_dice_loss(logits, label)) * len(samples)
            probs = torch.sigmoid(logits)[:, 0].cpu().numpy()
            for prob, (_, _, truth) in zip(probs, samples, strict=True):
                pos, neg = metrics.score_histogram(prob, truth, bins=VALIDATION_BINS)
                positive += pos
                negative += neg
        threshold = metrics.best_f1_from_histograms(positive, negative)[0]
        at_best = metrics.confusion_at_threshold(positive, negative, threshold)
        at_half = metrics.confusion_at_threshold(positive, negative, 0.5)
        return {
            **metrics.scores(at_best),
            "threshold": threshold,
            "f1_at_0.5": metrics.scores(at_half)["f1"],
            "loss": loss_sum / len(val_set),
            **at_best.as_dict(),
        }
