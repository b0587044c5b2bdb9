"""Datasets of image pairs, what a pair's images are (its fingerprint), and the leakage audit's findings
(pairs of pairs that show the same scene in two splits: `experiments.datasets.leakage`)."""

import hashlib

from django.conf import settings
from django.db import models


def pair_fingerprint(a_sha256: str, b_sha256: str) -> str:
    """What a pair's images are, whatever its name or dataset: the same A and B give the same print.
    Checkpoints record the prints of the pairs they were trained and validated on."""
    return hashlib.sha256(f"{a_sha256}:{b_sha256}".encode()).hexdigest()


class Dataset(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    hidden = models.BooleanField(
        default=False, help_text="created for a batch job; not listed with the user's datasets"
    )
    leakage = models.JSONField(default=dict, blank=True, help_text="summary of the last leakage audit")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["owner", "name"], name="unique_dataset_name_per_owner")]

    def __str__(self):
        return self.name


class Split(models.TextChoices):
    TRAIN = "train"
    VAL = "val"
    TEST = "test"
    NONE = "", "unassigned"


class ImagePair(models.Model):
    """Image A ("before") and B ("after"), with an optional change mask in B's frame."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="pairs")
    name = models.CharField(max_length=255)
    category = models.CharField(max_length=100, blank=True, db_index=True)
    split = models.CharField(max_length=5, choices=Split.choices, blank=True, default=Split.NONE)
    image_a = models.CharField(max_length=500, help_text="storage key")
    image_b = models.CharField(max_length=500, help_text="storage key")
    label = models.CharField(max_length=500, blank=True, help_text="storage key of the mask (255 = changed)")
    a_sha256 = models.CharField(max_length=64)
    b_sha256 = models.CharField(max_length=64)
    label_sha256 = models.CharField(max_length=64, blank=True)
    a_width = models.PositiveIntegerField()
    a_height = models.PositiveIntegerField()
    b_width = models.PositiveIntegerField()
    b_height = models.PositiveIntegerField()
    a_bytes = models.PositiveBigIntegerField()
    b_bytes = models.PositiveBigIntegerField()
    a_print = models.TextField(blank=True, help_text="near-duplicate fingerprint of A (inference.near_duplicates)")
    b_print = models.TextField(blank=True, help_text="near-duplicate fingerprint of B")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        # Official layouts (LEVIR-CD's train/val/test) reuse names across splits; within a split a name is one pair.
        constraints = [
            models.UniqueConstraint(fields=["dataset", "split", "name"], name="unique_pair_name_per_dataset_split")
        ]

    def __str__(self):
        return self.name

    @property
    def fingerprint(self) -> str:
        return pair_fingerprint(self.a_sha256, self.b_sha256)

    @property
    def has_label(self):
        return bool(self.label)


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
