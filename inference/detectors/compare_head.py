"""The thesis's ``DifferenceDetector``: ResNet-50 features of both images and a compare head.

As written in the thesis: global-average-pooled ResNet-50 features (2048-d) of each image,
concatenated (4096) -> Linear 512 -> ReLU -> Linear 1, giving one "changed" logit per image
pair (``predict_score``). For a map, the same network is applied to anchor patches (64 px,
stride 32, all patches of a batch in one forward): each patch pair gets a logit, and the
coarse grid of logits is interpolated smoothly to the input size, so ``model.forward(xa, xb)``
returns dense logits N x 1 x H x W like every other learned detector (the same loss trains it).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.detectors.base import check_image
from inference.detectors.learned import LearnedDetector, build_learned_detector

PATCH_SIZE = 64
PATCH_STRIDE = 32
FEATURES = 2048


def _resnet50_trunk(state: dict | None) -> nn.Module:
    """ResNet-50 up to global average pooling: N x 3 x H x W -> N x 2048."""
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    net.fc = nn.Identity()
    if state is not None:
        from inference.weights import load_state_dict_checked

        wanted = net.state_dict().keys()
        load_state_dict_checked(net, {k: v for k, v in state.items() if k in wanted}, origin="ImageNet resnet50")
    return net


class CompareHeadNet(nn.Module):
    """``forward(xa, xb)``: dense logits from anchor patches; ``image_logits``: one per pair."""

    def __init__(
        self,
        backbone_state: dict | None = None,
        patch_size: int = PATCH_SIZE,
        patch_stride: int = PATCH_STRIDE,
    ):
        super().__init__()
        self.backbone = _resnet50_trunk(backbone_state)
        self.compare_head = nn.Sequential(nn.Linear(FEATURES * 2, 512), nn.ReLU(inplace=True), nn.Linear(512, 1))
        self.patch_size = patch_size
        self.patch_stride = patch_stride

    def image_logits(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        """The thesis's forward: N x 1 "changed" logits for whole images (or patches)."""
        features = self.backbone(torch.cat([xa, xb], dim=0))
        fa, fb = features.chunk(2, dim=0)
        return self.compare_head(torch.cat([fa, fb], dim=1))

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        n, _, height, width = xa.shape
        patch, stride = self._patch_geometry(height, width)
        pa, grid = _patches(xa, patch, stride)
        pb, _ = _patches(xb, patch, stride)
        logits = self.image_logits(pa, pb).view(n, 1, *grid)
        return _grid_to_dense(logits, height, width, patch, stride)

    def _patch_geometry(self, height: int, width: int) -> tuple[int, int]:
        """Patches no larger than the image; the stride keeps the patch/stride ratio."""
        patch = min(self.patch_size, height, width)
        stride = max(1, self.patch_stride * patch // self.patch_size)
        return patch, stride


def _patches(x: torch.Tensor, patch: int, stride: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """N x C x H x W -> (N * gh * gw) x C x patch x patch, row-major per image."""
    n, c = x.shape[:2]
    tiles = x.unfold(2, patch, stride).unfold(3, patch, stride)  # N, C, gh, gw, p, p
    grid = (tiles.shape[2], tiles.shape[3])
    tiles = tiles.permute(0, 2, 3, 1, 4, 5).reshape(n * grid[0] * grid[1], c, patch, patch)
    return tiles.contiguous(memory_format=torch.channels_last), grid


def _grid_to_dense(grid: torch.Tensor, height: int, width: int, patch: int, stride: int):
    """Place each patch logit at its patch centre, interpolate between centres, extend to edges."""
    gh, gw = grid.shape[-2:]
    span_h, span_w = (gh - 1) * stride + 1, (gw - 1) * stride + 1
    dense = F.interpolate(grid, size=(span_h, span_w), mode="bilinear", align_corners=True)
    top, left = patch // 2, patch // 2
    bottom, right = height - span_h - top, width - span_w - left
    return F.pad(dense, (left, right, top, bottom), mode="replicate")


class CompareHeadDetector(LearnedDetector):
    """Adds the thesis's image-level score to the learned-detector contract."""

    last_image_score: float | None = None

    def predict_score(self, a: np.ndarray, b: np.ndarray) -> float:
        """Probability that the pair changed at all (whole images at the input size)."""
        return self.predict_scores([(a, b)])[0]

    def predict_scores(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[float]:
        for a, b in pairs:
            check_image(a, "A")
            check_image(b, "B")
        xa = self.preprocess([a for a, _ in pairs])
        xb = self.preprocess([b for _, b in pairs])
        with self.running():
            logits = self.model.image_logits(xa, xb).float()
        scores = torch.sigmoid(logits)[:, 0].cpu().tolist()
        self.last_image_score = scores[-1]
        return scores


def build_compare_head(*, name, weights="auto", device="auto", input_size=None, options=None):
    """Thesis DifferenceDetector over 64 px anchor patches (stride 32), plus an image score."""
    return build_learned_detector(
        name=name,
        family="compare-head",
        make_model=CompareHeadNet,
        weights=weights,
        device=device,
        backbone="resnet50",
        input_size=input_size,
        options=options,
        detector_class=CompareHeadDetector,
    )
