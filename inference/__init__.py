"""diffplatform's inference library: images, alignment, detectors, weights, metrics, pictures.

Names are imported lazily (PEP 562) so ``import inference`` stays light: torch is imported
only when something that needs it is first used. Never imports Django.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ImageError": "inference.images",
    "load_image": "inference.images",
    "load_mask": "inference.images",
    "Alignment": "inference.alignment",
    "align_pair": "inference.alignment",
    "register_detector": "inference.registry",
    "create_detector": "inference.registry",
    "list_detectors": "inference.registry",
    "detector_info": "inference.registry",
    "load_detector_modules": "inference.registry",
    "UnknownDetectorError": "inference.registry",
    "Detector": "inference.detectors.base",
    "DetectorInfo": "inference.detectors.base",
    "WeightsUnavailable": "inference.weights",
    "WeightsError": "inference.weights",
    "set_checkpoint_resolver": "inference.weights",
    "save_checkpoint": "inference.weights",
    "load_checkpoint": "inference.weights",
    "select_device": "inference.runtime",
    "seed_everything": "inference.runtime",
}

__all__ = [
    "Alignment",
    "Detector",
    "DetectorInfo",
    "ImageError",
    "UnknownDetectorError",
    "WeightsError",
    "WeightsUnavailable",
    "align_pair",
    "create_detector",
    "detector_info",
    "list_detectors",
    "load_checkpoint",
    "load_detector_modules",
    "load_image",
    "load_mask",
    "register_detector",
    "save_checkpoint",
    "seed_everything",
    "select_device",
    "set_checkpoint_resolver",
]


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
