"""Siamese change detectors on torchvision backbones: one shared backbone, feature differences.

Both images go through the same backbone in one batched pass. At each of four stages the
absolute feature difference ``|fa - fb|`` is reduced by a 1x1 convolution to a small width,
then a light top-down decoder (upsample + add + 3x3 conv, FPN style) fuses the stages from
coarse to fine; a 1x1 head gives logits at the finest stage, upsampled bilinearly to the
input size.

Backbones are always built with ``weights=None``; ImageNet weights, when available, are
handed in by ``inference.weights`` as a state dict (nothing here downloads). The detectors
are declared in ``inference.builtin_detectors``, which names the builders and network
factories below by dotted path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from inference.detectors.learned import build_learned_detector

PRIOR_CHANGE_PROBABILITY = 0.1


@dataclass(frozen=True)
class BackboneSpec:
    """How to cut a torchvision network into four feature stages.

    ``build(state)`` returns ``(stages, channels)``: the stage modules, applied in sequence,
    and their output channels. ``state`` is an ImageNet state dict for the full torchvision
    model, or ``None`` for random initialisation.
    """

    name: str
    build: Callable
    decoder_width: int


def _load_backbone(model: nn.Module, state: dict | None, name: str) -> None:
    """Load the ImageNet weights the stages use; heads we drop (fc, classifier) are ignored."""
    if state is None:
        return
    from inference.weights import load_state_dict_checked

    wanted = model.state_dict().keys()
    load_state_dict_checked(model, {k: v for k, v in state.items() if k in wanted}, origin=f"ImageNet {name}")


def _resnet50_stages(state: dict | None):
    from torchvision.models import resnet50

    net = resnet50(weights=None)
    net.fc = nn.Identity()
    _load_backbone(net, state, "resnet50")
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    return [stem, net.layer2, net.layer3, net.layer4], (256, 512, 1024, 2048)


class _VggFeatures(nn.Module):
    """Only VGG16's convolutional part, keyed ``features.N`` like torchvision's state dict.

    Building ``torchvision.models.vgg16`` would also allocate its 120M-parameter classifier.
    """

    def __init__(self):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        self.features = make_layers(cfgs["D"], batch_norm=False)


def _vgg16_stages(state: dict | None):
    net = _VggFeatures()
    _load_backbone(net, state, "vgg16")
    f = net.features
    # conv2_2 (/2), conv3_3 (/4), conv4_3 (/8), conv5_3 (/16), each after its ReLU.
    return [f[:9], f[9:16], f[16:23], f[23:30]], (128, 256, 512, 512)


def _mobilenet_v3_large_stages(state: dict | None):
    from torchvision.models import mobilenet_v3_large

    net = mobilenet_v3_large(weights=None)
    net.classifier = nn.Identity()
    _load_backbone(net, state, "mobilenet_v3_large")
    f = net.features
    # strides /4, /8, /16, /32 (the last stage ends with the 960-channel 1x1 conv).
    return [f[:4], f[4:7], f[7:13], f[13:17]], (24, 40, 112, 960)


BACKBONES = {
    "resnet50": BackboneSpec("resnet50", _resnet50_stages, decoder_width=64),
    "vgg16": BackboneSpec("vgg16", _vgg16_stages, decoder_width=64),
    "mobilenet_v3_large": BackboneSpec("mobilenet_v3_large", _mobilenet_v3_large_stages, 32),
}


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class DifferenceDecoder(nn.Module):
    """Fuses per-stage feature differences, coarse to fine, into one logit map."""

    def __init__(self, channels: tuple[int, ...], width: int):
        super().__init__()
        self.reduce = nn.ModuleList(conv_bn_relu(c, width, kernel_size=1) for c in channels)
        self.smooth = nn.ModuleList(conv_bn_relu(width, width) for _ in channels[:-1])
        self.head = nn.Conv2d(width, 1, kernel_size=1)
        nn.init.constant_(self.head.bias, _logit(PRIOR_CHANGE_PROBABILITY))

    def forward(self, differences: list[torch.Tensor]) -> torch.Tensor:
        reduced = [reduce(d) for reduce, d in zip(self.reduce, differences, strict=True)]
        fused = reduced[-1]
        for level in range(len(reduced) - 2, -1, -1):
            skip = reduced[level]
            fused = F.interpolate(fused, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            fused = self.smooth[level](fused + skip)
        return self.head(fused)


def _logit(p: float) -> float:
    """Start the head at a low change prior: most pixels in change datasets are unchanged."""
    return math.log(p / (1.0 - p))


class SiameseDiffNet(nn.Module):
    """Shared backbone + multi-scale difference decoder. ``forward(xa, xb) -> N x 1 x H x W``."""

    def __init__(self, backbone: str, backbone_state: dict | None = None):
        super().__init__()
        spec = BACKBONES[backbone]
        stages, channels = spec.build(backbone_state)
        self.stages = nn.ModuleList(stages)
        self.decoder = DifferenceDecoder(channels, spec.decoder_width)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embeddings: the first backbone stage's features (``N x C x h x w``).

        That stage has stride 4 for ResNet-50 and MobileNetV3 (2 for VGG16); it is the finest
        level the decoder compares, so a metric learned there sharpens the map. Not normalised.
        """
        return self.stages[0](x)

    def forward(self, xa: torch.Tensor, xb: torch.Tensor) -> torch.Tensor:
        features = torch.cat([xa, xb], dim=0)  # one backbone pass for both images
        differences = []
        for stage in self.stages:
            features = stage(features)
            fa, fb = features.chunk(2, dim=0)
            differences.append(torch.abs(fa - fb))
        logits = self.decoder(differences)
        return F.interpolate(logits, size=xa.shape[-2:], mode="bilinear", align_corners=False)


def siamese_resnet50_net(backbone_state: dict | None = None) -> SiameseDiffNet:
    return SiameseDiffNet("resnet50", backbone_state)


def siamese_vgg16_net(backbone_state: dict | None = None) -> SiameseDiffNet:
    return SiameseDiffNet("vgg16", backbone_state)


def siamese_mobilenetv3_net(backbone_state: dict | None = None) -> SiameseDiffNet:
    return SiameseDiffNet("mobilenet_v3_large", backbone_state)


def build_siamese(*, name, backbone: str, weights="auto", device="auto", input_size=None, options=None):
    """A Siamese detector on ``backbone`` (a key of ``BACKBONES``)."""
    return build_learned_detector(
        name=name,
        family="siamese",
        make_model=lambda state: SiameseDiffNet(backbone, state),
        weights=weights,
        device=device,
        backbone=backbone,
        input_size=input_size,
        options=options,
    )


def build_siamese_resnet50(*, name, weights="auto", device="auto", input_size=None, options=None):
    """Siamese ResNet-50, multi-scale |fa - fb| decoder."""
    return build_siamese(
        name=name, backbone="resnet50", weights=weights, device=device, input_size=input_size, options=options
    )


def build_siamese_vgg16(*, name, weights="auto", device="auto", input_size=None, options=None):
    """Siamese VGG16 features, multi-scale |fa - fb| decoder."""
    return build_siamese(
        name=name, backbone="vgg16", weights=weights, device=device, input_size=input_size, options=options
    )


def build_siamese_mobilenetv3(*, name, weights="auto", device="auto", input_size=None, options=None):
    """Siamese MobileNetV3-Large, multi-scale |fa - fb| decoder (fast)."""
    return build_siamese(
        name=name,
        backbone="mobilenet_v3_large",
        weights=weights,
        device=device,
        input_size=input_size,
        options=options,
    )
