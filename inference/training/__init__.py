"""Train a learned change detector on (A, B, label) pairs.

``train_detector`` drives a registered detector's network (``detector.model``, whose
``forward(xa, xb)`` returns change logits) with AdamW and a one-cycle learning-rate schedule
(warm-up to ``lr`` over the first 30% of the steps, then cosine decay), validates after every
epoch, keeps the weights of the best epoch and stops early when validation F1 has not improved
for ``patience`` epochs.

Validation F1 is the pooled F1 at the *best* threshold on the validation pairs (256 levels),
not at 0.5: early in training the probabilities are poorly calibrated, and F1 at a fixed 0.5
jumps between epochs for reasons that have nothing to do with how well changes are ranked. The
chosen threshold is recorded (``val_metrics["threshold"]``) with F1 at 0.5 (``"f1_at_0.5"``).

Losses (``loss=``): ``"bce-dice"`` and ``"triplet"`` (BCE-Dice plus a contrastive term on patch
embeddings), see ``inference.training.losses``. Training pairs get paired geometric and
nuisance augmentations, including a viewpoint homography of A for ``WARP_PROBABILITY`` of them
(``inference.training.data``). Everything is seeded: on a CPU the same seed gives the same
history.

Modules: ``loop`` (``train_detector``, the optimiser steps, validation), ``losses``, ``data``
(samples, augmentation, tiles, tensors), ``history`` (best epoch, ETA, early stopping,
progress), ``checkpoint`` (``TrainingResult``, ``save_training_checkpoint``) and
``model_setup`` (initial weights, ``describe_init``, ``estimate_training_seconds``). The names
below are re-exported here; constants are read from their own modules, so patch them there.
"""

from inference.training.checkpoint import TrainingResult, save_training_checkpoint
from inference.training.data import WARP_PROBABILITY, Triple
from inference.training.history import MIN_IMPROVEMENT, PROGRESS_UPDATES_PER_EPOCH, ProgressCallback
from inference.training.loop import VALIDATION_BINS, WARMUP_FRACTION, train_detector
from inference.training.losses import (
    CONTRASTIVE_MARGIN,
    CONTRASTIVE_WEIGHT,
    bce_dice_loss,
    contrastive_patch_loss,
)
from inference.training.model_setup import describe_init, estimate_training_seconds
from inference.training_config import LOSSES, TrainingConfig

__all__ = [
    "CONTRASTIVE_MARGIN",
    "CONTRASTIVE_WEIGHT",
    "LOSSES",
    "MIN_IMPROVEMENT",
    "PROGRESS_UPDATES_PER_EPOCH",
    "VALIDATION_BINS",
    "WARMUP_FRACTION",
    "WARP_PROBABILITY",
    "ProgressCallback",
    "TrainingConfig",
    "TrainingResult",
    "Triple",
    "bce_dice_loss",
    "contrastive_patch_loss",
    "describe_init",
    "estimate_training_seconds",
    "save_training_checkpoint",
    "train_detector",
]
