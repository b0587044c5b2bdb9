"""Learned detectors: a ``torch.nn.Module`` wrapped in the detector contract (``base``).

``build_learned_detector`` resolves weights, builds the network once and wraps it in a
``LearnedDetector``; the built-in Siamese and compare-head builders use it, and so can plug-ins.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import numpy as np
import torch

from inference.detectors.base import (
    DEFAULT_INPUT_SIZE,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Detector,
    DetectorInfo,
    Pair,
    check_image,
    match_size,
    resize_image,
    resize_probability,
)
from inference.tiling import Scaling, tiled_map


class LearnedDetector(Detector):
    """A detector backed by a ``torch.nn.Module`` with ``forward(xa, xb) -> logits``.

    Build one with ``build_learned_detector``; the network is created once and reused for
    every pair (nothing reloads per call). ``scaling`` (``inference.tiling``) says per pair
    whether the pair is resized to the input size or tiled at it; ``info.extra["scaling"]``
    records the choice.
    """

    def __init__(self, *, info: DetectorInfo, model, device, options, scaling=None):
        from inference.runtime import prepare_model

        self.info = info
        self.model = model
        self.device = device
        self.options = options
        self.input_size = info.input_size
        self.inference = prepare_model(model, device, options)  # what runs: see InferenceModule
        self._scale, self._shift = _normalisation(info.mean, info.std, device)
        self.set_scaling(scaling)

    def set_scaling(self, scaling) -> LearnedDetector:
        """Resize or tile (``"auto"`` | ``"resize"`` | ``"tile"``, or an ``inference.tiling.Scaling``)."""
        self.scaling = Scaling.of(scaling)
        self.info.extra["scaling"] = self.scaling.record()
        return self

    def preprocess(self, images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 image(s) -> normalised float tensor N x 3 x S x S on ``self.device``.

        Images are resized to the detector's ``input_size`` (S) first.
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        size = self.input_size
        batch = np.stack([resize_image(check_image(img, "input"), size, size) for img in images])
        tensor = torch.from_numpy(batch).to(self.device, non_blocking=True)
        # NHWC uint8 -> NCHW view: already channels_last in memory, no copy.
        tensor = tensor.permute(0, 3, 1, 2).float()
        tensor = tensor.mul_(self._scale).add_(self._shift)
        return _memory_format(tensor, self.options.channels_last)

    @contextlib.contextmanager
    def running(self):
        """Eval mode, ``inference_mode`` and AMP on CUDA; the previous train/eval mode comes back.

        A training loop may have left the model in train mode (dropout, batch statistics).
        """
        from inference.runtime import autocast

        was_training = self.model.training
        if was_training:  # eval() walks every submodule: only when a training loop left it in train mode
            self.model.eval()
        try:
            with torch.inference_mode(), autocast(self.device, self.options.amp_enabled(self.device)):
                yield
        finally:
            if was_training:
                self.model.train(True)

    def forward_logits(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """The network's logits as float32, run as ``running()`` describes."""
        with self.running():
            return self.inference(xa, xb).float()

    def predict_batch(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        """Resized pairs run ``options.batch_size`` at a time; a tiled pair runs its windows
        ``scaling.tile_batch`` at a time (``inference.tiling``)."""
        maps: list[np.ndarray | None] = [None] * len(pairs)
        resized = []
        for index, (a, b) in enumerate(pairs):
            check_image(a, "A")
            check_image(b, "B")
            if self.scaling.tiles(b.shape[0], b.shape[1], self.input_size):
                maps[index] = self.predict_tiled(a, b)
            else:
                resized.append(index)
        step = max(1, self.options.batch_size)
        for start in range(0, len(resized), step):
            chunk = resized[start : start + step]
            for index, prob in zip(chunk, self._predict_chunk([pairs[i] for i in chunk]), strict=True):
                maps[index] = prob
        return maps

    def predict_tiled(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """B's map from windows of the input size over B's frame (A resized to B's size first)."""
        return tiled_map(
            match_size(a, b),
            b,
            size=self.input_size,
            predict_tiles=self._tile_probabilities,
            overlap=self.scaling.overlap,
            tile_batch=self.scaling.tile_batch,
        )

    def _tile_probabilities(self, tiles: Sequence[Pair]) -> np.ndarray:
        xa = self.preprocess([a for a, _ in tiles])
        xb = self.preprocess([b for _, b in tiles])
        with torch.inference_mode():
            return torch.sigmoid(self.forward_logits(xa, xb))[:, 0].cpu().numpy()

    def _predict_chunk(self, pairs: Sequence[Pair]) -> list[np.ndarray]:
        # A is resized straight to the input size: the same geometry as "A to B's size, then
        # to the input size", with one interpolation instead of two.
        xa = self.preprocess([a for a, _ in pairs])
        xb = self.preprocess([b for _, b in pairs])
        with torch.inference_mode():
            probs = torch.sigmoid(self.forward_logits(xa, xb))[:, 0].cpu().numpy()
        return [resize_probability(p, b.shape[0], b.shape[1]) for p, (_, b) in zip(probs, pairs, strict=True)]


def _normalisation(mean, std, device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x / 255 - mean) / std`` as one multiply-add: ``x * scale + shift``."""
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (1.0 / (255.0 * std_t)).to(device), (-mean_t / std_t).to(device)


def _memory_format(tensor: torch.Tensor, channels_last: bool) -> torch.Tensor:
    if channels_last:
        return tensor.contiguous(memory_format=torch.channels_last)
    return tensor.contiguous()


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def build_learned_detector(
    *,
    name: str,
    family: str,
    make_model: Callable,
    weights,
    device,
    backbone: str | None = None,
    input_size: int | None = None,
    options=None,
    detector_class: type[LearnedDetector] = LearnedDetector,
    scaling=None,
) -> LearnedDetector:
    """Resolve weights, build the network once, load its weights, wrap it in a detector.

    ``make_model(backbone_state)`` builds the network; ``backbone_state`` is the torchvision
    ImageNet state dict when the weights resolve to ``"imagenet"``, else ``None``.
    ``input_size=None`` takes the checkpoint's ``meta["input_size"]`` or 256. ``scaling``: see
    ``LearnedDetector.set_scaling`` (default ``"auto"``).
    """
    from inference import weights as weights_io
    from inference.runtime import RuntimeOptions, select_device

    chosen_device = select_device(device)
    source = weights_io.resolve_weights(name, weights, backbone=backbone)
    backbone_state = None
    if source.kind == "imagenet":
        backbone_state = weights_io.load_imagenet_state_dict(source)
    model = make_model(backbone_state)
    extra: dict = {"backbone": backbone} if backbone else {}
    meta: dict = {}
    if source.kind == "checkpoint":
        meta = weights_io.apply_checkpoint(model, source, detector_name=name)
        extra["checkpoint_meta"] = meta
    elif source.kind == "imagenet":
        extra.update(backbone_weights="imagenet", decoder="random")
    info = DetectorInfo(
        name=name,
        family=family,
        learned=True,
        params=count_parameters(model),
        input_size=int(input_size or meta.get("input_size") or DEFAULT_INPUT_SIZE),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights=source.provenance,
        weights_sha256=source.sha256,
        device=str(chosen_device),
        extra=extra,
    )
    return detector_class(
        info=info, model=model, device=chosen_device, options=options or RuntimeOptions(), scaling=scaling
    )
