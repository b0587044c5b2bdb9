import hashlib
import tempfile
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from experiments import storage
from experiments.errors import ServiceError
from experiments.management.owners import add_user_argument, owner_for
from experiments.models import Dataset, TrainingJob
from experiments.training import services as training_services
from inference.training_config import DEFAULTS, INITS, LOSSES, OPTION_NAMES
from inference.weights import EXPORT_DTYPES


class Command(BaseCommand):
    help = "Train a learned detector on a dataset and register the checkpoint (weights='auto' then uses it)."

    def add_arguments(self, parser):
        parser.add_argument("detector")
        parser.add_argument("--dataset", required=True, help="dataset name or id")
        parser.add_argument("--epochs", type=int, default=DEFAULTS.epochs)
        parser.add_argument("--loss", choices=LOSSES, default=DEFAULTS.loss)
        parser.add_argument("--size", type=int, default=DEFAULTS.size)
        parser.add_argument("--seed", type=int, default=DEFAULTS.seed)
        parser.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size)
        parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
        parser.add_argument("--patience", type=int, default=DEFAULTS.patience)
        parser.add_argument(
            "--init",
            choices=INITS,
            default=DEFAULTS.init,
            help="starting weights: auto (ImageNet backbone if its file is in the torch cache, else random), "
            "imagenet (that file, or an error saying where to put it), scratch (random)",
        )
        parser.add_argument("--queue", action="store_true", help="run on a Celery worker instead of in this process")
        parser.add_argument(
            "--export",
            default="",
            metavar="PATH",
            help="also copy the registered checkpoint file out of storage to PATH",
        )
        parser.add_argument(
            "--export-dtype",
            choices=EXPORT_DTYPES,
            default="fp32",
            help="fp16 writes the exported copy with half-precision tensors (half the size; a new SHA-256, "
            "its meta names the registered checkpoint's); loading casts back to fp32",
        )
        add_user_argument(parser)

    def handle(self, *args, detector, dataset, queue, user, export, export_dtype, **options):
        owner = owner_for(user)
        found = Dataset.objects.filter(owner=owner)
        found = found.filter(pk=int(dataset)) if dataset.isdigit() else found.filter(name=dataset)
        if not found.exists():
            raise CommandError(f"{owner.username} has no dataset {dataset!r}.")
        dataset = found.get()
        self._announce(detector, dataset, options)
        config = {k: options[k] for k in OPTION_NAMES}
        try:
            if queue:
                job = training_services.training_start(owner=owner, detector=detector, dataset=dataset, **config)
            else:
                job = self._inline(owner, detector, dataset, config)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        job = self._follow(job, config["epochs"])
        if job.state != "succeeded":
            raise CommandError(f"Training {job.state}: {job.error}")
        checkpoint = job.checkpoint
        self.stdout.write(
            f"Checkpoint {checkpoint.sha256} registered for {detector}: {checkpoint.epochs} epochs, "
            f"val F1 {checkpoint.val_metrics.get('f1')}, val IoU {checkpoint.val_metrics.get('iou')}"
        )
        if export:
            self._export(checkpoint, Path(export), export_dtype)

    def _export(self, checkpoint, path: Path, dtype: str):
        """Copy the stored bytes, checking they are the ones registered (same SHA-256); for fp16, write
        a half-precision copy of them instead."""
        from inference.weights import convert_checkpoint

        data = storage.read_bytes(checkpoint.file_key)
        if hashlib.sha256(data).hexdigest() != checkpoint.sha256:
            raise CommandError(
                f"stored checkpoint {checkpoint.file_key} does not match its SHA-256 {checkpoint.sha256}"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        if dtype == "fp32":
            path.write_bytes(data)
            sha256 = checkpoint.sha256
        else:
            with tempfile.TemporaryDirectory() as folder:
                source = Path(folder) / "registered.pt"
                source.write_bytes(data)
                sha256 = convert_checkpoint(source, path, dtype)
        size = path.stat().st_size
        self.stdout.write(f"Exported {dtype} checkpoint to {path} ({size / 1e6:.1f} MB, sha256 {sha256})")

    def _announce(self, detector, dataset, options):
        from inference.training import describe_init, estimate_training_seconds
        from inference.weights import WeightsUnavailable

        n_pairs = dataset.pairs.exclude(label="").count()
        try:  # before any job exists: --init imagenet without the backbone file stops here
            self.stdout.write(f"{detector}: {describe_init(detector, options['init'])}")
        except WeightsUnavailable as exc:
            raise CommandError(str(exc)) from None
        try:
            seconds = estimate_training_seconds(detector, n_pairs, options["epochs"], options["size"])
            self.stdout.write(
                f"Estimated time for {options['epochs']} epochs on {n_pairs} pairs: ~{seconds / 60:.1f} min"
            )
        except Exception as exc:  # noqa: BLE001 - an estimate must never stop training
            self.stdout.write(f"(no time estimate: {exc})")

    def _inline(self, owner, detector, dataset, config):
        """Create the job without queueing it, then execute it in this process."""
        from experiments.training import engine as training_engine

        job = training_services.training_start(owner=owner, detector=detector, dataset=dataset, enqueue=False, **config)
        with tqdm(total=config["epochs"], unit="epoch", desc=f"training {detector}") as bar:

            def on_update(update):
                if update.get("stage") == "epoch":
                    bar.update(1)
                    bar.set_postfix(loss=update.get("train_loss"), val_f1=update.get("val_f1"))

            try:
                training_engine.execute_training(job.pk, listener=on_update)
            except Exception as exc:  # noqa: BLE001 - recorded on the job, reported below
                training_engine.fail_training(job.pk, f"{type(exc).__name__}: {exc}")
        return TrainingJob.objects.get(pk=job.pk)

    def _follow(self, job, epochs):
        with tqdm(total=epochs, unit="epoch", desc=f"job {job.pk}", disable=job.is_finished) as bar:
            while not job.is_finished:
                time.sleep(1)
                job.refresh_from_db()
                done = len(job.progress.get("history", []))
                bar.update(done - bar.n)
        return job
