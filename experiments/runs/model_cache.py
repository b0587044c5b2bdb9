"""Loaded detectors kept per worker process, so nothing reloads a model per pair or per run."""

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
):
    """A detector from the LRU keyed by (name, weights, device, input size, seed, options), created on a miss.

    ``input_size`` is the size the engine resolved for a learned detector (override, checkpoint
    meta or registry default); it is passed to the builder, so the network runs at exactly that
    size. Classical detectors take none (``None``). ``options`` go to the builder as they are
    (an ensemble's ``members``, each with its own weights and input size).

    Random initialisation is seeded, so "random" weights are the same network in every process
    for the same seed (and their results can be cached and compared honestly)."""
    from inference import create_detector
    from inference.catalogue import catalogue_entry
    from inference.runtime import seed_everything

    key = (name, weights_ref, str(weights), device, input_size, seed, json.dumps(options, sort_keys=True, default=str))
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
    built_with = {"input_size": input_size} if catalogue_entry(name).learned and input_size else {}
    seed_everything(seed)
    detector = create_detector(name, weights=weights, device=device, **built_with, **(options or {}))
    with _lock:
        _models[key] = detector
        while len(_models) > CAPACITY:
            _models.popitem(last=False)
    return detector


def clear() -> None:
    with _lock:
        _models.clear()
