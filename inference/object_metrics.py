"""Object-level change-detection scores: connected components of the predicted and labelled masks,
matched one-to-one by pixel IoU. Empty cases follow the rule in :mod:`inference.metrics`."""

import cv2
import numpy as np

from inference.metrics import _as_mask, _check_same_shape, _ratio


def object_scores(
    pred: np.ndarray,
    label: np.ndarray,
    iou_threshold: float = 0.5,
    connectivity: int = 8,
    valid: np.ndarray | None = None,
) -> dict[str, float | int]:
    """Object-level precision/recall/F1 over connected components.

    Objects are the connected components of ``pred & valid`` and ``label & valid``: on both sides
    the area outside ``valid`` is left out, as it is for pixel counts (an object cut by the
    border of ``valid`` counts as its valid part(s)). A predicted and a labelled object match when
    their pixel IoU is at least ``iou_threshold``; pairs are matched one-to-one, greedily from the
    highest IoU. Empty cases follow the rule in the module docstring (no predicted objects:
    precision 1; no labelled objects: recall 1).
    """
    pred = _as_mask(pred, "pred")
    label = _as_mask(label, "label")
    _check_same_shape(pred, label, "pred", "label")
    if valid is not None:
        valid = _as_mask(valid, "valid")
        _check_same_shape(valid, label, "valid", "label")
        pred, label = pred & valid, label & valid
    pred_ids, predicted = _components(pred, connectivity)
    label_ids, actual = _components(label, connectivity)
    matched = _greedy_matches(pred_ids, predicted, label_ids, actual, iou_threshold)
    return {
        "precision": _ratio(matched, predicted),
        "recall": _ratio(matched, actual),
        "f1": _ratio(2 * matched, predicted + actual),
        "matched": matched,
        "predicted": predicted,
        "actual": actual,
    }


def _components(mask: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    count, ids = cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity)
    return ids, count - 1


def _greedy_matches(
    pred_ids: np.ndarray, predicted: int, label_ids: np.ndarray, actual: int, iou_threshold: float
) -> int:
    if predicted == 0 or actual == 0:
        return 0
    pred_area = np.bincount(pred_ids.ravel(), minlength=predicted + 1)
    label_area = np.bincount(label_ids.ravel(), minlength=actual + 1)
    overlap = (pred_ids > 0) & (label_ids > 0)
    pair_codes = pred_ids[overlap].astype(np.int64) * (actual + 1) + label_ids[overlap]
    codes, intersections = np.unique(pair_codes, return_counts=True)
    pred_of, label_of = np.divmod(codes, actual + 1)
    ious = intersections / (pred_area[pred_of] + label_area[label_of] - intersections)
    order = np.argsort(-ious, kind="stable")
    used_pred, used_label, matched = set(), set(), 0
    for k in order:
        if ious[k] < iou_threshold:
            break
        if pred_of[k] in used_pred or label_of[k] in used_label:
            continue
        used_pred.add(pred_of[k])
        used_label.add(label_of[k])
        matched += 1
    return matched
