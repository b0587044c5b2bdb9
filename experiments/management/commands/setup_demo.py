"""First-start content for `make run`: a benchmark dataset for the demo account and the shipped
checkpoints in `weights/`, registered as public weights (`weights="auto"` picks them up).

The demo dataset is the test split of the benchmark the shipped checkpoints were trained on
(`make_benchmark --pairs 480 --size 128 --seed 0`): pairs none of them trained or validated on, so
the demo scores them as docs/weights.md does. Each shipped checkpoint's `<name>.trained_on.json`
holds the fingerprints of its train and val pairs (`make_benchmark ... --fingerprints`).
"""

import hashlib
import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand
from tqdm import tqdm

from experiments.checkpoints import services as checkpoint_services
from experiments.claims import services as claim_services
from experiments.datasets.benchmark import synthetic_dataset_create
from experiments.management.owners import add_user_argument, owner_for
from experiments.models import Dataset, ModelCheckpoint

WEIGHTS_DIR = Path(settings.BASE_DIR) / "weights"


class Command(BaseCommand):
    help = "Create the demo dataset and register the shipped checkpoints (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--pairs", type=int, default=480, help="size of the benchmark whose test split is the demo")
        parser.add_argument("--size", type=int, default=128)
        parser.add_argument(
            "--weights-only",
            action="store_true",
            help="only register the shipped weights (production: the release step), no demo dataset",
        )
        add_user_argument(parser)

    def handle(self, *args, pairs, size, user, weights_only=False, **options):
        self._register_weights()
        added = claim_services.thesis_claims_ensure()
        if added:
            self.stdout.write(f"Added the thesis's {added} claimed figures for its three models.")
        if weights_only:
            return
        owner = owner_for(user)
        if Dataset.objects.filter(owner=owner, name="synthetic-demo").exists():
            self.stdout.write("Demo dataset synthetic-demo already exists.")
            return
        with tqdm(unit="pair", desc="demo dataset (test split)") as bar:
            dataset = synthetic_dataset_create(owner=owner, name="synthetic-demo", pairs=pairs, size=size, seed=0,
                                               only_split="test", progress=bar.update)  # fmt: skip
        self.stdout.write(
            f"Demo dataset {dataset.name!r}: {dataset.pairs.count()} pairs in 8 categories, the test split of "
            f"the {pairs}-pair benchmark (no shipped checkpoint trained on them)."
        )

    def _register_weights(self):
        from inference.weights import load_checkpoint

        for path in sorted(WEIGHTS_DIR.glob("*.pt")):
            data = path.read_bytes()
            sha256 = hashlib.sha256(data).hexdigest()
            if ModelCheckpoint.objects.filter(sha256=sha256, is_public=True).exists():
                continue
            _, meta, _ = load_checkpoint(path)
            detector = meta["detector"]
            manifest = path.with_suffix(".trained_on.json")
            if "trained_on" not in meta and manifest.is_file():
                record = json.loads(manifest.read_text())
                meta["trained_on"] = {split: record[split] for split in ("train", "val") if split in record}
            checkpoint_services.checkpoint_register(
                owner=None, detector=detector, dataset=None, data=data, sha256=sha256,
                epochs=int(meta.get("epochs_run") or meta.get("epochs") or 0),
                val_metrics=meta.get("val_metrics") or {}, config={**meta, "shipped_file": path.name},
                is_public=True, origin=ModelCheckpoint.Origin.SHIPPED,
            )  # fmt: skip
            self.stdout.write(f"Registered shipped weights {path.name} for {detector} ({sha256[:12]}).")
        untrained = [name for name in ("siamese-resnet50", "siamese-vgg16", "resnet50-compare-head")
                     if not ModelCheckpoint.objects.filter(detector=name).exists()]  # fmt: skip
        if untrained:
            self.stdout.write(
                f"No trained weights for {', '.join(untrained)}: they run only with ImageNet weights in TORCH_HOME "
                "or after `python manage.py train_detector NAME --dataset D` on a dataset other than synthetic-demo, "
                "which is the test split (docs/weights.md shows how the shipped weights were trained)."
            )
