"""A run's pairs as the detectors see them: aligned once per run (A warped onto B), loaded per pair."""

import logging
from dataclasses import dataclass

import numpy as np
from django.conf import settings

from experiments import storage
from experiments.live.progress import publish_run_progress
from experiments.models import ImagePair, PairAlignment, Run
from experiments.runs.selectors import scored_pairs

logger = logging.getLogger(__name__)


def align_run_pairs(run: Run) -> None:
    from inference import align_pair
    from inference.images import encode_png
    from inference.render import mask_png

    done = set(run.alignments.values_list("pair_id", flat=True))
    todo = [p for p in scored_pairs(run.experiment) if p.pk not in done]
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


def load_pair_inputs(pair: ImagePair, alignment: PairAlignment | None) -> PairInputs:
    from inference import load_image
    from inference.images import load_mask

    a, b = load_pair_images(pair)
    valid = None
    if alignment is not None:
        a = load_image(storage.read_bytes(alignment.warped_a_key))
        valid, _ = load_mask(storage.read_bytes(alignment.valid_mask_key))
    label = load_mask(storage.read_bytes(pair.label))[0] if pair.label else None
    return PairInputs(pair, a, b, label, valid)
