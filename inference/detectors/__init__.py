"""Built-in detector implementations.

Importing this package registers nothing and imports no torch: the built-ins are declared in
``inference.builtin_detectors`` and their builders here are imported by dotted path when a
detector is created. ``base`` (the contract, classical detectors) is torch-free; ``learned``,
``siamese``, ``unet`` and ``compare_head`` need torch. The names below load on first use.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ClassicalDetector": "inference.detectors.base",
    "Detector": "inference.detectors.base",
    "DetectorInfo": "inference.detectors.base",
    "LearnedDetector": "inference.detectors.learned",
    "build_learned_detector": "inference.detectors.learned",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'inference.detectors' has no attribute {name!r}")
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
