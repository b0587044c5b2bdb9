"""Static facts about the built-in detectors, importable without torch.

The web tier lists detectors, validates experiment choices and routes tasks to queues without
importing torch; the registry (`inference.registry`) is the authority inside workers, and a test
keeps the two in step.
"""

import os
from dataclasses import asdict, dataclass
from pathlib import Path


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


# torchvision's ImageNet files per learned detector (the backbone's), the default first; a test keeps
# this equal to `inference.weights.imagenet_filenames`, which reads them from torchvision's enums.
IMAGENET_FILES = {
    "siamese-unet": (),
    "siamese-resnet50": ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
    "resnet50-compare-head": ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth"),
    "siamese-vgg16": ("vgg16-397923af.pth",),
    "siamese-mobilenetv3": ("mobilenet_v3_large-5c1a4163.pth", "mobilenet_v3_large-8738ca79.pth"),
}
TRAINING_COST_FACTOR = 3.0  # forward + backward is about three forwards


def torch_hub_checkpoints_dir() -> Path:
    """Where torchvision keeps downloaded weights: `torch.hub.get_dir()/checkpoints`, without torch."""
    if os.environ.get("TORCH_HOME"):
        base = Path(os.environ["TORCH_HOME"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"
    return base / "hub" / "checkpoints"


def training_start_point(name: str) -> str:
    """What training `name` starts from, as the UI and CLI say it."""
    files = IMAGENET_FILES.get(name, ())
    if not files:
        return "from scratch (no pretrained backbone for this architecture)"
    folder = torch_hub_checkpoints_dir()
    found = next((f for f in files if (folder / f).is_file()), None)
    if found:
        return f"ImageNet backbone weights ({folder / found}); decoder from scratch"
    return f"from scratch: no ImageNet weights in {folder} (put {files[0]} there to start from ImageNet)"


def estimated_training_seconds(name: str, pairs: int, epochs: int, size: int = 256) -> float:
    """A rough CPU estimate from the catalogue's per-pair cost (training: ~3x a forward pass)."""
    per_pair_s = catalogue_entry(name).relative_cost / 1000 * TRAINING_COST_FACTOR * (size / 256) ** 2
    return per_pair_s * pairs * epochs
