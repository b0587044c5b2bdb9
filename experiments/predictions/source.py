"""An uploaded prediction set standing in for a model inside a run: its identity and each pair's map.

The detector plan carries it as the weights of `external:<name>` (`experiments.plans`); the detector
slot (`experiments.runs.detector_slot`) asks it for what it would ask a model:
the record of what ran, a weights identity for the result cache (per pair: the stored map's
sha256, so a re-upload is never served a stale result) and the pair's map. Nothing is timed or
measured: the maps were made elsewhere.
"""

import hashlib

import numpy as np

from experiments import storage
from experiments.models import ImagePair, PredictionSet
from experiments.predictions.maps import load_stored

NOT_MEASURED = "not measured here"


class PredictionSource:
    def __init__(self, predictions: PredictionSet):
        self.predictions = predictions
        self._files = None

    @property
    def weights_ref(self) -> str:
        return f"external:{self.predictions.archive_sha256}"

    @property
    def info(self) -> dict:
        """The run's record of this detector, shaped like a loaded detector's `info.as_dict()`."""
        predictions = self.predictions
        return {
            "name": predictions.detector_name,
            "family": "external",
            "learned": False,
            "params": None,
            "flops": None,
            "input_size": None,
            "weights": "external",
            "weights_sha256": predictions.archive_sha256,
            "device": "cpu",
            "extra": {
                "kind": predictions.kind,
                "uploaded_at": predictions.created_at.isoformat(),
                "prediction_set": predictions.pk,
            },
        }

    def static_record(self) -> dict:
        """What replaces the slot's measured-hardware record: nothing was measured."""
        return {
            "input_size": None,
            "input_size_source": None,
            "device": "cpu",
            "precision": None,
            "memory_kind": None,
            "memory_device": None,
            "latency_batch_size": None,
            "latency": NOT_MEASURED,
            "memory": NOT_MEASURED,
        }

    def _file(self, pair: ImagePair):
        if self._files is None:
            self._files = {p.pair_id: p for p in self.predictions.predictions.all()}
        found = self._files.get(pair.pk)
        if found is None:
            raise LookupError(
                f"{self.predictions.detector_name} has no map for pair {pair.name!r} (added after the upload?); "
                "upload the predictions again under a new name"
            )
        return found

    def pair_ref(self, pair: ImagePair) -> str:
        """The weights identity in this pair's result-cache key: the stored map's content."""
        return f"external:{self._file(pair).sha256}"

    def predict(self, pair: ImagePair) -> np.ndarray:
        """The pair's stored map (float32 in [0, 1], B's size), checked against its sha256."""
        found = self._file(pair)
        data = storage.read_bytes(found.file_key)
        if hashlib.sha256(data).hexdigest() != found.sha256:
            raise ValueError(f"the stored map of pair {pair.name!r} in {self.predictions.detector_name} is corrupted")
        extension = found.file_key.rpartition(".")[2]
        return load_stored(data, extension, self.predictions.kind, (pair.b_height, pair.b_width))

    def predict_timed(self, item):
        """`(map, None, reading)` as `DetectorSlot.predict_timed` answers: no latency, no memory."""
        from inference.memory import MemoryReading

        return self.predict(item.pair), None, MemoryReading(kind=None, device="")
