"""Writes of model checkpoints: a file in storage and its row, both or neither."""

from django.db import transaction

from experiments import storage
from experiments.models import ModelCheckpoint


def checkpoint_register(*, owner, detector: str, dataset, data: bytes, sha256: str, epochs: int,
                        val_metrics: dict, config: dict, suffix: str = ".pt", is_public: bool = False):  # fmt: skip
    """Store a checkpoint file and its row (or return the existing row for the same bytes)."""
    existing = ModelCheckpoint.objects.filter(sha256=sha256, owner=owner).first()
    if existing is not None:
        return existing
    key = storage.checkpoint_key(sha256[:16], f"{detector}{suffix}")
    storage.save_bytes(key, data)
    try:
        with transaction.atomic():
            return ModelCheckpoint.objects.create(
                owner=owner, detector=detector, dataset=dataset, file_key=key, sha256=sha256, epochs=epochs,
                val_metrics=val_metrics, config=config, is_public=is_public,
            )  # fmt: skip
    except BaseException:
        storage.delete_keys([key])
        raise
