"""Setting a detector up for training: initial weights, argument checks, time estimates."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from inference.registry import create_detector, get_spec
from inference.runtime import autocast, synchronize
from inference.training_config import INITS, LOSSES


def describe_init(name: str, init: str = "auto") -> str:
    """How ``train_detector(name, init=init)`` would initialise the network, in words.

    Raises ``WeightsUnavailable`` for ``init="imagenet"`` without the backbone file."""
    return resolve_init(name, starting_weights("auto", init))[1]


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
    batch = max(1, min(batch_size, n_pairs or 1))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        detector = create_detector(name, weights=None, device=device, input_size=size)
        model = detector.model
        model.train()
        xa = torch.randn(batch, 3, size, size, device=detector.device)
        xb = torch.randn(batch, 3, size, size, device=detector.device)
        forward_backward(model, xa, xb)  # warm-up: allocations, kernel selection
        started = time.perf_counter()
        forward_backward(model, xa, xb)
        synchronize(detector.device)
        per_sample = (time.perf_counter() - started) / batch
    return float(per_sample * n_pairs * epochs * 1.25)


def build_for_training(name: str, init_weights, device: str, size: int):
    """``(detector, weights provenance, description)``; refuses detectors with nothing to train."""
    spec = get_spec(name)
    if not spec.learned:
        raise ValueError(f"detector {name!r} is classical ({spec.family}): it has nothing to train")
    source, text = resolve_init(name, init_weights)
    detector = create_detector(name, weights=source, device=device, input_size=size)
    return detector, detector.info.weights, text


def starting_weights(init_weights, init: str):
    """The ``init_weights`` that ``train_detector`` builds from. ``init`` "scratch" means ``None``
    (random) and "imagenet" the backbone file; with ``init`` "auto", ``init_weights`` ("auto", ``None``
    or a checkpoint path) is used as given. A non-auto ``init`` with a non-auto ``init_weights`` is an
    error: they would contradict each other."""
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; choose one of {', '.join(INITS)}")
    if init == "auto":
        return init_weights
    if init_weights != "auto":
        raise ValueError(f"init={init!r} and init_weights={init_weights!r} contradict each other: give one of them")
    return None if init == "scratch" else "imagenet"


def resolve_init(name: str, init_weights) -> tuple[str | Path | None, str]:
    """``(weights argument for create_detector, description)`` for ``init_weights``.

    ``"imagenet"`` needs the backbone's torchvision file in the torch cache and raises
    ``WeightsUnavailable`` saying where to put it (nothing is downloaded)."""
    from inference.weights import WeightsUnavailable, find_imagenet_file, imagenet_cache_dir, imagenet_filenames

    if init_weights is None or init_weights in ("random", "scratch"):
        return None, "random initialisation (asked for)"
    backbone = get_spec(name).backbone
    if init_weights == "imagenet":
        if backbone is None:
            raise WeightsUnavailable(f"{name} has no ImageNet backbone: train it with init 'scratch' (or 'auto')")
        found = find_imagenet_file(backbone)
        if found is None:
            files = " or ".join(imagenet_filenames(backbone))
            raise WeightsUnavailable(
                f"init 'imagenet' needs torchvision's ImageNet {backbone} weights ({files}) in "
                f"{imagenet_cache_dir()}; nothing is downloaded: copy the file there, or train with "
                "init 'scratch' (random initialisation)"
            )
        return "imagenet", f"ImageNet {backbone} backbone from {found}; decoder random"
    if init_weights != "auto":
        return init_weights, f"fine-tuning from checkpoint {init_weights}"
    if backbone is None:
        return None, f"random initialisation: {name} has no pretrained backbone"
    found = find_imagenet_file(backbone)
    if found is None:
        return None, (f"random initialisation: no ImageNet {backbone} weights in {imagenet_cache_dir()}")
    return "imagenet", f"ImageNet {backbone} backbone from {found}; decoder random"


def embedding_function(name: str, model) -> Callable[[torch.Tensor], torch.Tensor]:
    if not hasattr(model, "embed"):
        raise ValueError(
            f"loss='triplet' is only for Siamese detectors whose network exposes "
            f"embed(x) -> N x C x h x w patch embeddings; {name!r} does not. Use loss='bce-dice'."
        )
    return model.embed


def check_arguments(loss: str, epochs: int, size: int, batch_size: int, train_pairs) -> None:
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(LOSSES)}")
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    if len(train_pairs) == 0:
        raise ValueError("no training pairs: give at least one (a, b, label)")


def forward_backward(model, xa: torch.Tensor, xb: torch.Tensor) -> None:
    logits = model(xa, xb)
    logits.float().mean().backward()
    model.zero_grad(set_to_none=True)


def training_autocast(device: torch.device):
    """bf16 autocast on GPUs that support it (no loss scaling needed); fp32 elsewhere."""
    enabled = device.type == "cuda" and torch.cuda.is_bf16_supported()
    return autocast(device, enabled)
