"""Static facts about the built-in detectors, importable without torch.

The web tier lists detectors, validates experiment choices and routes tasks to queues without
importing torch; the registry (`inference.registry`) is the authority inside workers, and a test
keeps the two in step.
"""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    family: str  # classical | siamese | compare-head | ensemble
    learned: bool
    description: str
    relative_cost: float  # rough CPU time per 256x256 pair, in ms, measured on the 2-core reference machine

    @property
    def queue(self) -> str:
        """Celery queue: learned models go to `gpu` workers, everything else to `cpu`."""
        return "gpu" if self.learned else "cpu"

    def as_dict(self) -> dict:
        return {**asdict(self), "queue": self.queue}


BUILTIN_DETECTORS = {
    entry.name: entry
    for entry in (
        CatalogueEntry("absdiff", "classical", False, "Normalised colour distance between A and B.", 2),
        CatalogueEntry("ssim", "classical", False, "1 - local structural similarity (SSIM) map.", 6),
        CatalogueEntry("siamese-unet", "siamese", True, "FC-Siam-diff (Daudt et al. 2018), trained from scratch.", 25),
        CatalogueEntry(
            "siamese-resnet50", "siamese", True, "Shared ResNet-50 backbone, multi-scale feature differences.", 160
        ),
        CatalogueEntry(
            "siamese-vgg16", "siamese", True, "Shared VGG16 backbone, multi-scale feature differences.", 450
        ),
        CatalogueEntry(
            "siamese-mobilenetv3", "siamese", True, "Shared MobileNetV3 backbone, multi-scale feature differences.", 40
        ),
        CatalogueEntry(
            "resnet50-compare-head",
            "compare-head",
            True,
            "The thesis's DifferenceDetector: pooled ResNet-50 features, 4096-512-1 head over anchor patches.",
            900,
        ),
        CatalogueEntry("ensemble", "ensemble", False, "Mean of the member detectors' maps.", 10),
    )
}


def catalogue_names() -> list[str]:
    return sorted(BUILTIN_DETECTORS)


def catalogue_entry(name: str) -> CatalogueEntry:
    try:
        return BUILTIN_DETECTORS[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; choose one of {', '.join(catalogue_names())}") from None
