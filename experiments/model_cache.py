"""Loaded detectors kept per worker process, so nothing reloads a model per pair or per run."""

from collections import OrderedDict
from threading import Lock

CAPACITY = 3

_models: OrderedDict = OrderedDict()
_lock = Lock()


def get_detector(name: str, weights, weights_ref: str, device: str, input_size: int):
    """A detector from the LRU keyed by (name, weights, device, input size), created on a miss."""
    from inference import create_detector
    from inference.catalogue import catalogue_entry

    key = (name, weights_ref, str(weights), device, input_size)
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
    options = {"input_size": input_size} if catalogue_entry(name).learned else {}
    detector = create_detector(name, weights=weights, device=device, **options)
    with _lock:
        _models[key] = detector
        while len(_models) > CAPACITY:
            _models.popitem(last=False)
    return detector


def clear() -> None:
    with _lock:
        _models.clear()
