"""FC-Siam-diff (Daudt, Le Saux, Boulch, ICIP 2018): a small fully convolutional Siamese U-Net.

The encoder (4 levels: 16, 32, 64, 128 channels) is shared by both images; the decoder
upsamples with transposed convolutions and concatenates the absolute difference of the two
encoders' skip features at each level. About 1.35M parameters: small enough to train from
scratch on a CPU. Inputs whose sides are not multiples of 16 are padded (replicate) and the
output cropped back.

Unlike the paper, there is no dropout: with the short CPU trainings used here,
``Dropout2d(0.2)`` after every convolution slowed convergence; augmentation is the regulariser.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from inference.detectors.learned import build_learned_detector

ENCODER_WIDTHS = (16, 32, 64, 128)
DOWNSAMPLING = 2 ** len(ENCODER_WIDTHS)
EMBEDDING_LEVEL = 2  # third encoder block: 64 channels at 1/4 scale
PRIOR = 0.1


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _block(widths: list[int]) -> nn.Sequential:
    return nn.Sequential(*(_conv(i, o) for i, o in itertools.pairwise(widths)))


class FCSiamDiff(nn.Module):
    """``forward(xa, xb) -> logits N x 1 x H x W``, any H, W."""

    def __init__(self, backbone_state: dict | None = None, in_channels: int = 3):
        super().__init__()
        if backbone_state is not None:
            raise ValueError("FC-Siam-diff has no pretrained backbone")
        c1, c2, c3, c4 = ENCODER_WIDTHS
        self.encoder = nn.ModuleList(
            [
                _block([in_channels, c1, c1]),
                _block([c1, c2, c2]),
                _block([c2, c3, c3, c3]),
                _block([c3, c4, c4, c4]),
            ]
        )
        self.upsample = nn.ModuleList(
            nn.ConvTranspose2d(c, c, 3, stride=2, padding=1, output_padding=1) for c in (c4, c3, c2, c1)
        )
        self.decoder = nn.ModuleList(
            [
                _block([2 * c4, c4, c4, c3]),
                _block([2 * c3, c3, c3, c2]),
                _block([2 * c2, c2, c1]),
                nn.Sequential(_conv(2 * c1, c1), nn.Conv2d(c1, 1, 3, padding=1)),
            ]
        )
        # Start at a low change prior (most pixels are unchanged); the paper leaves it at 0.
        nn.init.constant_(self.decoder[-1][-1].bias, math.log(PRIOR / (1.0 - PRIOR)))

    def _encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        return skips, x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings ``N x 64 x H/4 x W/4``: the shared encoder's 1/4-scale features.

        Used by the contrastive (``loss="triplet"``) training term; not normalised here.
        """
        for level, block in enumerate(self.encoder[: EMBEDDING_LEVEL + 1]):
            x = block(x if level == 0 else F.max_pool2d(x, 2))
        return x

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        height, width = xa.shape[-2:]
        pad_h, pad_w = (-height) % DOWNSAMPLING, (-width) % DOWNSAMPLING
        both = torch.cat([xa, xb], dim=0)  # one encoder pass for both images
        if pad_h or pad_w:
            both = F.pad(both, (0, pad_w, 0, pad_h), mode="replicate")
        skips, x = self._encode(both)
        x = x.chunk(2, dim=0)[1]  # B's deepest features, as in the authors' code
        for upsample, decode, skip in zip(self.upsample, self.decoder, reversed(skips), strict=True):
            skip_a, skip_b = skip.chunk(2, dim=0)
            x = decode(torch.cat([upsample(x), torch.abs(skip_a - skip_b)], dim=1))
        return x[..., :height, :width]


def build_siamese_unet(*, name, weights="auto", device="auto", input_size=None, options=None):
    """FC-Siam-diff: shared U-Net encoder, decoder with |skip_a - skip_b| skips."""
    return build_learned_detector(
        name=name,
        family="siamese",
        make_model=FCSiamDiff,
        weights=weights,
        device=device,
        input_size=input_size,
        options=options,
    )
