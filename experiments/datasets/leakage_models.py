"""The table of the leakage audit (`experiments.datasets.leakage`): one row per pair of pairs that show
the same scene in two splits. Kept apart from `experiments.models`, which imports it."""

from django.db import models


class LeakageKind(models.TextChoices):
    EXACT = "exact", "exact copy"
    NEAR = "near", "near-duplicate"
    TILE = "tile", "overlapping tile"


class LeakageFinding(models.Model):
    """`pair` and `other` (in another split of the same dataset) show the same scene: `images` says
    which image of each matched (e.g. "A~B": pair's A is other's B); `distance` is the perceptual
    hashes' Hamming distance (0 for exact copies and tiles); `detail` says more (the tiles' overlap)."""

    dataset = models.ForeignKey("experiments.Dataset", on_delete=models.CASCADE, related_name="leakage_findings")
    pair = models.ForeignKey("experiments.ImagePair", on_delete=models.CASCADE, related_name="+")
    other = models.ForeignKey("experiments.ImagePair", on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=5, choices=LeakageKind.choices)
    images = models.CharField(max_length=3, blank=True)
    distance = models.PositiveSmallIntegerField(default=0)
    detail = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["id"]

    def __str__(self):
        return f"{self.pair_id} ~ {self.other_id} ({self.kind})"
