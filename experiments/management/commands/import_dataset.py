from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from experiments.datasets import ingest
from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.management.owners import add_user_argument, owner_for


class Command(BaseCommand):
    help = "Import a folder or zip in the LEVIR-CD layout (A/ B/ label/ [list/]) or loose <name>_A/_B/_label files."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--name", required=True, help="name of the new dataset")
        parser.add_argument("--category", default="", help="category for pairs that name none")
        parser.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
        add_user_argument(parser)

    def handle(self, *args, path, name, category, dry_run, user, **options):
        owner = owner_for(user)
        try:
            files = ingest.read_source(Path(path))
            report = ingest.check_files(files, category=category)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(report.text())
        if not report.ok:
            raise CommandError("Nothing was imported: fix the problems above.")
        if dry_run:
            self.stdout.write("Dry run: nothing written.")
            return
        try:
            with transaction.atomic():
                dataset = dataset_services.dataset_create(owner=owner, name=name)
                ingest.import_checked(dataset=dataset, report=report)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Imported {len(report.pairs)} pairs into dataset {name!r} (id {dataset.pk}).")
