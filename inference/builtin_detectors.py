"""The built-in detectors, declared without importing them (or torch).

Each declaration is the single source of that detector's facts: the registry serves them, the
torch-free catalogue shows them, and tests build every detector to check that it reports what is
declared here (family, learned, input size, parameters) and that ``imagenet_files`` equal
torchvision's. Builders and model factories are ``"module:attribute"`` references, imported
only when a detector is created (``inference.registry.create_detector``).

``relative_cost``: rough CPU milliseconds per 256x256 pair, measured on the 2-core reference
machine. ``params``: the parameter count of the network built by ``model_factory``.
"""

from __future__ import annotations

from inference.detector_spec import DetectorSpec

LEARNED_INPUT_SIZE = 256
RESNET50_FILES = ("resnet50-11ad3fa6.pth", "resnet50-0676ba61.pth")
VGG16_FILES = ("vgg16-397923af.pth",)
MOBILENET_V3_LARGE_FILES = ("mobilenet_v3_large-5c1a4163.pth", "mobilenet_v3_large-8738ca79.pth")

# The ensemble's default members besides every learned detector that has a trained checkpoint
# (`inference.detectors.ensemble`, and `experiments.plans.kinds` in the platform).
ENSEMBLE_CLASSICAL_MEMBERS = ("absdiff", "ssim")

_CLASSICAL = "inference.detectors.classical"
_SIAMESE = "inference.detectors.siamese"

BUILTIN_SPECS: tuple[DetectorSpec, ...] = (
    DetectorSpec(
        name="absdiff",
        family="classical",
        learned=False,
        description="Normalised colour distance between A and B.",
        relative_cost=2,
        params=0,
        builder=f"{_CLASSICAL}:build_absdiff",
    ),
    DetectorSpec(
        name="ssim",
        family="classical",
        learned=False,
        description="1 - local structural similarity (SSIM) map.",
        relative_cost=6,
        params=0,
        builder=f"{_CLASSICAL}:build_ssim",
    ),
    DetectorSpec(
        name="siamese-unet",
        family="siamese",
        learned=True,
        description="FC-Siam-diff (Daudt et al. 2018), trained from scratch.",
        input_size=LEARNED_INPUT_SIZE,
        relative_cost=25,
        params=1_350_001,
        builder="inference.detectors.unet:build_siamese_unet",
        model_factory="inference.detectors.unet:FCSiamDiff",
    ),
    DetectorSpec(
        name="siamese-resnet50",
        family="siamese",
        learned=True,
        description="Shared ResNet-50 backbone, multi-scale feature differences.",
        input_size=LEARNED_INPUT_SIZE,
        relative_cost=160,
        params=23_865_345,
        backbone="resnet50",
        imagenet_files=RESNET50_FILES,
        builder=f"{_SIAMESE}:build_siamese_resnet50",
        model_factory=f"{_SIAMESE}:siamese_resnet50_net",
    ),
    DetectorSpec(
        name="siamese-vgg16",
        family="siamese",
        learned=True,
        description="Shared VGG16 backbone, multi-scale feature differences.",
        input_size=LEARNED_INPUT_SIZE,
        relative_cost=450,
        params=14_916_353,
        backbone="vgg16",
        imagenet_files=VGG16_FILES,
        builder=f"{_SIAMESE}:build_siamese_vgg16",
        model_factory=f"{_SIAMESE}:siamese_vgg16_net",
    ),
    DetectorSpec(
        name="siamese-mobilenetv3",
        family="siamese",
        learned=True,
        description="Shared MobileNetV3 backbone, multi-scale feature differences.",
        input_size=LEARNED_INPUT_SIZE,
        relative_cost=40,
        params=3_036_433,
        backbone="mobilenet_v3_large",
        imagenet_files=MOBILENET_V3_LARGE_FILES,
        builder=f"{_SIAMESE}:build_siamese_mobilenetv3",
        model_factory=f"{_SIAMESE}:siamese_mobilenetv3_net",
    ),
    DetectorSpec(
        name="resnet50-compare-head",
        family="compare-head",
        learned=True,
        description=(
            "The thesis's DifferenceDetector: pooled ResNet-50 features, 4096-512-1 head over anchor patches."
        ),
        input_size=LEARNED_INPUT_SIZE,
        relative_cost=900,
        params=25_606_209,
        backbone="resnet50",
        imagenet_files=RESNET50_FILES,
        builder="inference.detectors.compare_head:build_compare_head",
        model_factory="inference.detectors.compare_head:CompareHeadNet",
    ),
    DetectorSpec(
        name="ensemble",
        family="ensemble",
        learned=False,  # the platform queues it by its planned members (experiments.plans)
        description=(
            "Weighted mean of the member detectors' maps (default members: absdiff, ssim and every learned"
            " detector with a trained checkpoint)."
        ),
        relative_cost=10,
        params=0,
        builder="inference.detectors.ensemble:build_ensemble",
    ),
)
