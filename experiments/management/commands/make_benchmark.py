import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from experiments.datasets.benchmark import synthetic_dataset_create, synthetic_fingerprints
from experiments.errors import ServiceError
from experiments.management.owners import add_user_argument, owner_for


class Command(BaseCommand):
    help = "Generate the procedural change-detection benchmark and store it as a dataset."

    def add_arguments(self, parser):
        parser.add_argument("--name", default="synthetic-v1")
        parser.add_argument("--pairs", type=int, default=80)
        parser.add_argument("--size", type=int, default=256)
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--export", default="", help="also write the pairs in the LEVIR-CD layout to this folder")
        parser.add_argument(
            "--fingerprints",
            default="",
            metavar="JSON",
            help="only write the fingerprints of the pairs per split to this file (no dataset): the "
            "`trained_on` record of a checkpoint trained on this benchmark",
        )
        add_user_argument(parser)

    def handle(self, *args, name, pairs, size, seed, export, fingerprints, user, **options):
        if pairs < 1:
            raise CommandError("--pairs must be at least 1")
        if fingerprints:
            with tqdm(total=pairs, unit="pair", desc="fingerprints") as bar:
                prints = synthetic_fingerprints(pairs=pairs, size=size, seed=seed, progress=bar.update)
            record = {"benchmark": {"pairs": pairs, "size": size, "seed": seed}, **prints}
            Path(fingerprints).write_text(json.dumps(record, indent=1) + "\n")
            self.stdout.write(f"Fingerprints of {pairs} pairs ({', '.join(sorted(prints))}) written to {fingerprints}")
            return
        owner = owner_for(user)
        with tqdm(total=pairs, unit="pair", desc="generating") as bar:
            try:
                dataset = synthetic_dataset_create(owner=owner, name=name, pairs=pairs, size=size, seed=seed,
                                                   progress=bar.update)  # fmt: skip
            except ServiceError as exc:
                raise CommandError(exc.message) from None
        self.stdout.write(f"Dataset {dataset.name!r} (id {dataset.pk}) with {dataset.pairs.count()} pairs.")
        if export:
            from inference.synthetic import export_levir, generate_benchmark

            folder = export_levir(generate_benchmark(pairs, size=size, seed=seed), export)
            self.stdout.write(f"Exported in the LEVIR-CD layout to {folder}")
