"""Loaded detectors kept per worker process, so nothing reloads a model per pair or per run."""

import functools
import gc
import json
from collections import OrderedDict
from threading import Lock

CAPACITY = 3

_models: OrderedDict = OrderedDict()
_lock = Lock()


def get_detector(
    name: str,
    weights,
    weights_ref: str,
    device: str,
    input_size: int | None,
    seed: int = 0,
    options: dict | None = None,
    scaling: str = "auto",
    build=None,
):
    """A detector from the LRU keyed by (name, weights, device, input size, seed, options), created on a miss.

    ``input_size`` is the size the engine resolved for a learned detector (override, checkpoint
    meta or registry default); it is passed to the builder, so the network runs at exactly that
    size. Classical detectors take none (``None``). ``options`` go to the builder as they are
    (an ensemble's ``members``, each with its own weights and input size). ``build(device)`` builds
    a detector the registry does not know (an uploaded ONNX model: ``DetectorPlan.builder``).

    Random initialisation is seeded, so "random" weights are the same network in every process
    for the same seed (and their results can be cached and compared honestly)."""
    from inference import create_detector
    from inference.runtime import seed_everything

    key = (name, weights_ref, str(weights), device, input_size, seed, json.dumps(options, sort_keys=True, default=str))
    key += (scaling,)  # resize or tile (inference.tiling): learned detectors and an ensemble's learned members
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
    if build is not None:
        detector = build(device=device).set_scaling(scaling)
    else:
        built_with = {"input_size": input_size} if input_size else {}  # learned detectors only have one
        seed_everything(seed)
        detector = create_detector(
            name, weights=weights, device=device, scaling=scaling, **built_with, **(options or {})
        )
    with _lock:
        _models[key] = detector
        _evict()
    if not _is_weightless(detector):
        _settle_once()
    return detector


def warm_up(detector) -> None:
    """One untimed call on a small pair after loading (once per detector kept here), so lazy
    initialisation is not counted as latency."""
    if getattr(detector, "_diffplatform_warm", False):
        return
    import numpy as np

    blank = np.zeros((64, 64, 3), np.uint8)
    detector.predict(blank, blank)
    detector._diffplatform_warm = True


@functools.cache
def _settle_once() -> None:
    """Once per process, when its first network is loaded (torch, torchvision and the platform
    imported: some 500,000 objects in a worker), take everything alive out of the cyclic garbage
    collector's way. A full collection walks every tracked object, 0.3 s on a 2-CPU machine, and
    one came every few runs, in the middle of a task. Frozen objects are still freed by reference
    counting; what later loads and runs make is collected as usual."""
    gc.collect()
    gc.freeze()


WEIGHTLESS_CAPACITY = 16


def _evict() -> None:
    """At most CAPACITY detectors with weights, least recently used out first. Weightless (classical)
    ones cost nothing to keep and are counted apart, so a run of three networks and two classical
    detectors finds all five loaded on its next run instead of rebuilding every network."""
    for weightless, capacity in ((False, CAPACITY), (True, WEIGHTLESS_CAPACITY)):
        keys = [key for key, detector in _models.items() if _is_weightless(detector) == weightless]
        for key in keys[: max(0, len(keys) - capacity)]:
            _close(_models.pop(key))


def _close(detector) -> None:
    """A sandboxed ONNX model's child process ends with its place here (`inference.onnx_runner`)."""
    close = getattr(detector, "close", None)
    if close is not None:
        close()


def _is_weightless(detector) -> bool:
    return getattr(getattr(detector, "info", None), "weights", None) == "none"


def clear() -> None:
    with _lock:
        dropped = list(_models.values())
        _models.clear()
    for detector in dropped:
        _close(detector)
