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

Losses (``loss=``):

- ``"bce-dice"``: binary cross-entropy plus soft Dice on the change logits;
- ``"triplet"``: the metric-learning loss of the thesis, in its pairwise (contrastive) form:
  BCE-Dice plus a batch-balanced contrastive term on patch embeddings from ``model.embed(x)``
  (N x C x h x w, L2-normalised per patch). Unchanged patches pull A's and B's embeddings
  together (``d^2``), changed patches push them at least ``CONTRASTIVE_MARGIN`` apart
  (``max(0, m - d)^2``), as in STANet's BCL. A strict anchor/positive/negative triplet needs two
  "after" patches per anchor, which a change pair does not have; the pairwise form learns the
  same metric. BCE-Dice stays in so the map head still trains. Only Siamese models that expose
  ``embed`` support it.

Training pairs get paired geometric and independent nuisance augmentations
(``inference.augment``), including, for ``WARP_PROBABILITY`` of them, a small viewpoint
homography applied to A only (the label stays in B's frame), so that unaligned but unchanged
content is learned as no change; validation pairs are used as they are. Everything is seeded: on a CPU
the same seed gives the same history.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from inference import metrics
from inference.augment import augment_pair, random_crop

LOSSES = ("bce-dice", "triplet")
CONTRASTIVE_MARGIN = 1.0
CONTRASTIVE_WEIGHT = 0.5
WARP_PROBABILITY = 0.3
WARMUP_FRACTION = 0.3
HISTOGRAM_BINS = 256
MIN_IMPROVEMENT = 1e-4
PROGRESS_UPDATES_PER_EPOCH = 5

ProgressCallback = Callable[[dict], None]
Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


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


# --- public helpers --------------------------------------------------------------------------


def describe_init(name: str) -> str:
    """How ``train_detector(name, init_weights="auto")`` would initialise the network, in words."""
    return _resolve_init(name, "auto")[1]


def estimate_training_seconds(
    name: str,
    n_pairs: int,
    epochs: int,
    size: int = 256,
    *,
    batch_size: int = 8,
    device: str = "auto",
) -> float:
    """Rough wall-clock estimate from one timed forward/backward pass on random inputs.

    Adds 25% for validation, augmentation and data handling. Does not touch the global RNGs.
    """
    from inference.registry import create_detector

    batch = max(1, min(batch_size, n_pairs or 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        detector = create_detector(name, weights=None, device=device, input_size=size)
        model = detector.model
        model.train()
        xa = torch.randn(batch, 3, size, size, device=detector.device)
        xb = torch.randn(batch, 3, size, size, device=detector.device)
        _forward_backward(model, xa, xb)  # warm-up: allocations, kernel selection
        started = time.perf_counter()
        _forward_backward(model, xa, xb)
        _synchronize(detector.device)
        per_sample = (time.perf_counter() - started) / batch
    return float(per_sample * n_pairs * epochs * 1.25)


def save_training_checkpoint(result: TrainingResult, path: str | Path, *, detector: str, dataset_name: str) -> str:
    """Write ``result``'s best weights with training metadata; returns the file's SHA-256."""
    from inference.weights import save_checkpoint

    meta = {
        "detector": detector,
        "dataset": dataset_name,
        "input_size": result.config.get("size"),
        "loss": result.config.get("loss"),
        "seed": result.config.get("seed"),
        "best_epoch": result.best_epoch,
        "epochs_run": result.config.get("epochs_run"),
        "val_metrics": _json_safe(result.val_metrics),
        "history": _json_safe(result.history),
        "config": _json_safe(result.config),
    }
    return save_checkpoint(path, result.state_dict, meta)


# --- training ----------------------------------------------------------------------------------


def train_detector(
    name: str,
    train_pairs: Sequence,
    val_pairs: Sequence,
    *,
    epochs: int = 10,
    loss: str = "bce-dice",
    size: int = 256,
    seed: int = 0,
    batch_size: int = 8,
    lr: float = 1e-3,
    device: str = "auto",
    init_weights: str | Path | None = "auto",
    patience: int = 3,
    on_progress: ProgressCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> TrainingResult:
    """Train detector ``name`` and return the weights of its best validation epoch.

    Pairs are objects with ``.a, .b, .label`` (e.g. ``SyntheticPair``) or ``(a, b, label)``
    tuples: RGB uint8 images, label bool or 0/255. Training images larger than ``size`` are
    randomly cropped to ``size``, smaller ones resized; validation images are cut into
    ``size`` tiles (or resized when smaller). ``init_weights``: ``"auto"`` (ImageNet backbone
    from the torch cache when present, else random), ``None`` (random) or a checkpoint path
    (fine-tuning). ``on_progress(dict)`` is called every few batches (``stage="train"``) and
    after each epoch (``stage="epoch"``); ``should_stop()`` returning True cancels after the
    current batch, keeping the best weights so far.
    """
    _check_arguments(loss, epochs, size, batch_size, train_pairs)
    from inference.runtime import seed_everything

    seed_everything(seed)
    detector, init_provenance, init_text = _build_detector(name, init_weights, device, size)
    model = detector.model
    embed = _embedding_function(name, model) if loss == "triplet" else None
    train_set = [_as_triple(p) for p in train_pairs]
    val_set = [tile for p in val_pairs for tile in _validation_tiles(_as_triple(p), size)]
    run = _Run(epochs=epochs, batches=math.ceil(len(train_set) / batch_size), patience=patience)
    run.on_progress = on_progress
    trainer = _Trainer(detector, embed, lr=lr, size=size, batch_size=batch_size, seed=seed)
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
        "optimizer": f"AdamW(weight_decay=1e-4), one-cycle (warm-up {WARMUP_FRACTION:.0%})",
        "augmentation": (
            "paired flips/rot90/crops + nuisance brightness/contrast/blur/noise/shift"
            f" + viewpoint homography of A (p={WARP_PROBABILITY})"
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
        state_dict=run.best_state if run.best_state is not None else _cpu_state(model),
        history=run.history,
        best_epoch=run.best_epoch,
        val_metrics=run.best_metrics,
        config=config,
        stopped_early=run.stopped_early,
        cancelled=run.cancelled,
        seconds=run.elapsed(),
    )


class _Run:
    """Bookkeeping for one training run: history, best epoch, ETA, early stopping, progress."""

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
                "eta_s": _finite(self.eta(epoch, batch)),
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
            "eta_s": _finite(self.eta(epoch, self.batches)),
        }
        self.history.append(record)
        # Without validation data the last epoch counts as the best one.
        score = val_f1 if val_f1 is not None and not math.isnan(val_f1) else -train_loss
        if score > self.best_f1 + MIN_IMPROVEMENT or self.best_state is None:
            self.best_f1, self.best_epoch, self.best_metrics = score, epoch, val
            self.best_state = _cpu_state(model)
        if self.on_progress is not None:
            self.on_progress({"stage": "epoch", "epochs": self.epochs, **record})

    def should_stop_early(self) -> bool:
        return self.patience > 0 and len(self.history) - self.best_epoch >= self.patience


class _Trainer:
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

    def train_epoch(self, train_set: list[Triple], epoch: int, run: _Run, should_stop) -> float:
        self.detector.model.train()
        losses = []
        order = self.rng.permutation(len(train_set))
        for batch, start in enumerate(range(0, len(order), self.batch_size), start=1):
            if should_stop is not None and should_stop():
                run.cancelled = True
                break
            indices = order[start : start + self.batch_size]
            samples = [_training_sample(train_set[i], self.rng, self.size) for i in indices]
            losses.append(self.step(samples))
            run.report_batch(epoch, batch, float(np.mean(losses)))
        return float(np.mean(losses)) if losses else math.nan

    def step(self, samples: list[Triple]) -> float:
        xa, xb, label = _to_tensors(self.detector, samples)
        with _autocast(self.detector.device):
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
        positive = np.zeros(HISTOGRAM_BINS, np.int64)
        negative = np.zeros(HISTOGRAM_BINS, np.int64)
        loss_sum = 0.0
        for start in range(0, len(val_set), self.batch_size):
            samples = val_set[start : start + self.batch_size]
            xa, xb, label = _to_tensors(self.detector, samples)
            with _autocast(self.detector.device):
                logits = model(xa, xb).float()
            loss_sum += float(bce_dice_loss(logits, label)) * len(samples)
            probs = torch.sigmoid(logits)[:, 0].cpu().numpy()
            for prob, (_, _, truth) in zip(probs, samples, strict=True):
                pos, neg = metrics.score_histogram(prob, truth, bins=HISTOGRAM_BINS)
                positive += pos
                negative += neg
        threshold = metrics.best_f1_from_histograms(positive, negative)[0]
        at_best = _confusion_at(positive, negative, threshold)
        at_half = _confusion_at(positive, negative, 0.5)
        return {
            **metrics.scores(at_best),
            "threshold": threshold,
            "f1_at_0.5": metrics.scores(at_half)["f1"],
            "loss": loss_sum / len(val_set),
            **at_best.as_dict(),
        }


def _confusion_at(positive: np.ndarray, negative: np.ndarray, threshold: float) -> metrics.Confusion:
    """Confusion for predicting ``level >= threshold * (bins - 1)`` from score histograms."""
    first = math.ceil(threshold * (len(positive) - 1) - 1e-9)
    tp, fp = int(positive[first:].sum()), int(negative[first:].sum())
    return metrics.Confusion(tp, fp, int(positive.sum()) - tp, int(negative.sum()) - fp)


# --- losses ------------------------------------------------------------------------------------


def bce_dice_loss(logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice (pooled over the batch, smoothed by 1 pixel)."""
    bce = F.binary_cross_entropy_with_logits(logits, label)
    prob = torch.sigmoid(logits)
    intersection = (prob * label).sum()
    dice = 1.0 - (2.0 * intersection + 1.0) / (prob.sum() + label.sum() + 1.0)
    return bce + dice


def contrastive_patch_loss(
    embed_a: torch.Tensor,
    embed_b: torch.Tensor,
    label: torch.Tensor,
    margin: float = CONTRASTIVE_MARGIN,
) -> torch.Tensor:
    """Batch-balanced contrastive loss on L2-normalised patch embeddings (see module docstring).

    A patch is changed when more than half of its pixels are, unchanged when none is; mixed
    patches are ignored. Each of the two terms is averaged over its own patches.
    """
    a = F.normalize(embed_a.float(), dim=1)
    b = F.normalize(embed_b.float(), dim=1)
    distance = (a - b).pow(2).sum(dim=1).clamp_min(1e-12).sqrt()  # N x h x w, in [0, 2]
    changed_fraction = F.adaptive_avg_pool2d(label, distance.shape[-2:])[:, 0]
    changed = changed_fraction > 0.5
    unchanged = changed_fraction == 0
    terms = []
    if unchanged.any():
        terms.append(distance[unchanged].pow(2).mean())
    if changed.any():
        terms.append(F.relu(margin - distance[changed]).pow(2).mean())
    if not terms:
        return distance.sum() * 0.0
    return sum(terms) / 2


# --- data ----------------------------------------------------------------------------------------


def _as_triple(pair) -> Triple:
    a, b, label = (pair.a, pair.b, pair.label) if hasattr(pair, "a") else pair
    label = np.asarray(label)
    if label.ndim == 3:
        label = label[..., 0]
    label = label > 0 if label.dtype != bool else label
    if label.shape != b.shape[:2]:
        raise ValueError(f"label shape {label.shape} does not match B's size {b.shape[:2]}")
    if a.shape != b.shape:
        a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(a), np.ascontiguousarray(b), label


def _fit(triple: Triple, size: int) -> Triple:
    """Resize a triple to ``size`` x ``size`` (label by nearest neighbour)."""
    a, b, label = triple
    if label.shape == (size, size):
        return triple
    a = cv2.resize(a, (size, size), interpolation=cv2.INTER_AREA)
    b = cv2.resize(b, (size, size), interpolation=cv2.INTER_AREA)
    label = cv2.resize(label.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST) > 0
    return a, b, label


def _training_sample(triple: Triple, rng: np.random.Generator, size: int) -> Triple:
    height, width = triple[2].shape
    if height >= size and width >= size:
        triple = random_crop(*triple, rng, size)
    return augment_pair(*_fit(triple, size), rng, warp_probability=WARP_PROBABILITY)


def _validation_tiles(triple: Triple, size: int) -> list[Triple]:
    """Non-overlapping ``size`` tiles covering the image (resized when it is smaller)."""
    a, b, label = triple
    height, width = label.shape
    if height < size or width < size:
        return [_fit(triple, size)]
    return [
        (
            a[y : y + size, x : x + size],
            b[y : y + size, x : x + size],
            label[y : y + size, x : x + size],
        )
        for y in range(0, height - size + 1, size)
        for x in range(0, width - size + 1, size)
    ]


def _to_tensors(detector, samples: Sequence[Triple]) -> tuple[torch.Tensor, ...]:
    xa = detector.preprocess([s[0] for s in samples])
    xb = detector.preprocess([s[1] for s in samples])
    label = torch.from_numpy(np.stack([s[2] for s in samples]).astype(np.float32))
    return xa, xb, label[:, None].to(detector.device)


# --- model set-up ------------------------------------------------------------------------------


def _build_detector(name: str, init_weights, device: str, size: int):
    from inference.registry import create_detector, get_spec

    spec = get_spec(name)
    if not spec.learned:
        raise ValueError(f"detector {name!r} is classical ({spec.family}): it has nothing to train")
    source, text = _resolve_init(name, init_weights)
    detector = create_detector(name, weights=source, device=device, input_size=size)
    return detector, detector.info.weights, text


def _resolve_init(name: str, init_weights) -> tuple[str | Path | None, str]:
    """``(weights argument for create_detector, description)`` for ``init_weights``."""
    from inference.registry import get_spec
    from inference.weights import find_imagenet_file, imagenet_cache_dir

    if init_weights is None or init_weights == "random":
        return None, "random initialisation (asked for)"
    if init_weights != "auto":
        return init_weights, f"fine-tuning from checkpoint {init_weights}"
    backbone = get_spec(name).backbone
    if backbone is None:
        return None, f"random initialisation: {name} has no pretrained backbone"
    found = find_imagenet_file(backbone)
    if found is None:
        return None, (f"random initialisation: no ImageNet {backbone} weights in {imagenet_cache_dir()}")
    return "imagenet", f"ImageNet {backbone} backbone from {found}; decoder random"


def _embedding_function(name: str, model) -> Callable[[torch.Tensor], torch.Tensor]:
    if not hasattr(model, "embed"):
        raise ValueError(
            f"loss='triplet' is only for Siamese detectors whose network exposes "
            f"embed(x) -> N x C x h x w patch embeddings; {name!r} does not. Use loss='bce-dice'."
        )
    return model.embed


def _check_arguments(loss: str, epochs: int, size: int, batch_size: int, train_pairs) -> None:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if len(train_pairs) == 0:
        raise ValueError("no training pairs: give at least one (a, b, label)")


def _forward_backward(model, xa: torch.Tensor, xb: torch.Tensor) -> None:
    logits = model(xa, xb)
    logits.float().mean().backward()
    model.zero_grad(set_to_none=True)


def _autocast(device: torch.device):
    """bf16 autocast on GPUs that support it (no loss scaling needed); fp32 elsewhere."""
    from inference.runtime import autocast

    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return autocast(device, enabled)


def _synchronize(device: torch.device) -> None:
    from inference.runtime import synchronize

    synchronize(device)


def _cpu_state(model) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().clone() for key, value in model.state_dict().items()}


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _json_safe(value):
    """Floats that are NaN/inf become None; containers are copied recursively."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return copy.copy(value)
