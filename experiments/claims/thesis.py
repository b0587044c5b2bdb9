"""The thesis's own figures for its three models (its table "Сравнение моделей", section 7 of
`/work/shared/seed/000_3b5a25a99d6355c8.txt`), shipped as built-in claims (migration 0014).

The thesis names neither its dataset nor its hardware nor its input size: those fields say so."""

THESIS_SOURCE = "thesis, section 7 (model comparison table)"
NOT_STATED = "not stated"
THESIS_FIGURES = {  # registry name: (IoU, time per image in ms, memory in MB)
    "siamese-resnet50": (0.89, 120.0, 1024.0),
    "siamese-vgg16": (0.82, 95.0, 548.0),
    "siamese-mobilenetv3": (0.78, 45.0, 64.0),
}


def thesis_claims() -> list[dict]:
    """The claims as `ClaimedFigure` field values (owner empty: shown to everyone)."""
    claims = []
    for detector, (iou, ms, mb) in THESIS_FIGURES.items():
        for metric, value in (("iou", iou), ("latency_ms", ms), ("memory_mb", mb)):
            claims.append({"detector": detector, "source": THESIS_SOURCE, "dataset": NOT_STATED,
                           "hardware": NOT_STATED, "metric": metric, "value": value})  # fmt: skip
    return claims
