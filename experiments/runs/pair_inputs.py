"""A run's pairs as the detectors see them: aligned once per run (A warped onto B), loaded per pair."""

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from experiments import storage
from experiments.live.progress import publish_run_progress
from experiments.models import ImagePair, PairAlignment, Run
from experiments.runs.selectors import scored_pairs, validation_pairs

logger = logging.getLogger(__name__)

# A run's detector tasks decode the same pairs: a worker keeps up to this many bytes of them decoded.
DECODED_PAIRS_BYTES = 128 * 2**20


def align_run_pairs(run: Run) -> None:
    from inference import align_pair
    from inference.images import encode_png
    from inference.render import mask_png

    done = set(run.alignments.values_list("pair_id", flat=True))
    pairs = [*scored_pairs(run.experiment), *validation_pairs(run.experiment)]
    todo = [p for p in pairs if p.pk not in done]
    for index, pair in enumerate(todo, start=1):
        a, b = load_pair_images(pair)
        alignment = align_pair(a, b)
        warped_key = storage.run_key(run.pk, "aligned", f"{pair.pk}-a.png")
        valid_key = storage.run_key(run.pk, "aligned", f"{pair.pk}-valid.png")
        storage.save_bytes(warped_key, encode_png(alignment.warped_a))
        storage.save_bytes(valid_key, mask_png(alignment.valid_mask))
        summary = alignment.as_dict()
        PairAlignment.objects.update_or_create(
            run=run,
            pair=pair,
            defaults={
                "method": summary["method"],
                "ok": summary["ok"],
                "homography": summary["homography"],
                "matches": summary["matches"],
                "inliers": summary["inliers"],
                "inlier_ratio": summary["inlier_ratio"],
                "reprojection_error": summary["reprojection_error"],
                "warped_a_key": warped_key,
                "valid_mask_key": valid_key,
            },
        )
        publish_run_progress(
            run.pk, {"stage": "aligning", "aligned": index + len(done), "pairs": len(todo) + len(done)}
        )


@dataclass
class PairInputs:
    pair: ImagePair
    a: np.ndarray
    b: np.ndarray
    label: np.ndarray | None
    valid: np.ndarray | None


def load_pair_images(pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
    from inference import load_image

    limit = settings.MAX_IMAGE_PIXELS
    return (
        load_image(storage.read_bytes(pair.image_a), max_pixels=limit),
        load_image(storage.read_bytes(pair.image_b), max_pixels=limit),
    )


class DecodedPairs:
    """Decoded pairs a worker process keeps between the detector tasks of a run, which would each
    decode the same files again; least recently used out first, within `budget` bytes. Entries are
    keyed by the storage keys they were decoded from (stored files are never rewritten in place) and
    their arrays are read-only, so no detector can change what the next one is given."""

    def __init__(self, budget: int):
        self.budget = budget
        self._entries: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple):
        with self._lock:
            arrays = self._entries.get(key)
            if arrays is not None:
                self._entries.move_to_end(key)
            return arrays

    def put(self, key: tuple, arrays: tuple) -> None:
        size = sum(array.nbytes for array in arrays if array is not None)
        if size > self.budget:
            return
        for array in arrays:
            if array is not None:
                array.flags.writeable = False
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = arrays
            self._bytes += size
            while self._bytes > self.budget:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= sum(array.nbytes for array in dropped if array is not None)


DECODED_PAIRS = DecodedPairs(budget=DECODED_PAIRS_BYTES)


def load_pair_inputs(pair: ImagePair, alignment: PairAlignment | None) -> PairInputs:
    """A pair decoded for the detectors (A warped onto B when the run aligns), from `DECODED_PAIRS`
    when an earlier detector task of this worker decoded it."""
    key = (pair.image_a, pair.image_b, pair.label, alignment.warped_a_key if alignment else "",
           alignment.valid_mask_key if alignment else "")  # fmt: skip
    arrays = DECODED_PAIRS.get(key)
    if arrays is None:
        arrays = _decode_pair(pair, alignment)
        DECODED_PAIRS.put(key, arrays)
    return PairInputs(pair, *arrays)


def _decode_pair(pair: ImagePair, alignment: PairAlignment | None) -> tuple:
    from inference import load_image
    from inference.images import load_mask

    a, b = load_pair_images(pair)
    valid = None
    if alignment is not None:
        a = load_image(storage.read_bytes(alignment.warped_a_key))
        valid, _ = load_mask(storage.read_bytes(alignment.valid_mask_key))
    label = load_mask(storage.read_bytes(pair.label))[0] if pair.label else None
    return a, b, label, valid
