from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from experiments.datasets.benchmark import synthetic_dataset_create
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
        add_user_argument(parser)

    def handle(self, *args, name, pairs, size, seed, export, user, **options):
        owner = owner_for(user)
        if pairs < 1:
            raise CommandError("--pairs must be at least 1")
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
