"""What a training run can be asked for: its options with their defaults, and the losses.

Torch-free, so the library (`inference.training.train_detector`), the platform's services, forms,
API and the `train_detector` command all read the same defaults from here.
"""

from dataclasses import asdict, dataclass, fields

LOSSES = ("bce-dice", "triplet")
EPOCHS_RANGE = (1, 500)  # what the service, the form and the API accept
# Where the network's starting weights come from: "auto" = the ImageNet backbone when its file is in
# the torch cache, else random; "imagenet" = that file, or an error saying where to put it;
# "scratch" = random initialisation.
INITS = ("auto", "imagenet", "scratch")


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 10
    loss: str = "bce-dice"
    size: int = 256  # training crop / validation tile size in pixels
    seed: int = 0
    batch_size: int = 8
    lr: float = 1e-3  # peak learning rate of the one-cycle schedule
    patience: int = 3  # epochs without a better validation score before stopping early
    init: str = "auto"  # one of INITS

    def as_dict(self) -> dict:
        return asdict(self)


OPTION_NAMES = tuple(f.name for f in fields(TrainingConfig))
DEFAULTS = TrainingConfig()


def training_config(options: dict) -> TrainingConfig:
    """A config from `options`, defaults for what is missing; unknown names raise TypeError naming them."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown training option(s) {', '.join(unknown)}; use {', '.join(OPTION_NAMES)}")
    return TrainingConfig(**options)
