from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from tqdm import tqdm

from experiments.datasets import ingest, layouts
from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.management.owners import add_user_argument, owner_for
from experiments.models import Split


class _Rejected(Exception):
    """Rolls back the new dataset when the import found problems."""


class Command(BaseCommand):
    help = (
        "Import a folder or zip in a public change-detection layout, keeping each pair's split: "
        + layouts.supported()
        + ". Pairs are read, checked and stored one at a time; any problem imports nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--name", required=True, help="name of the new dataset")
        parser.add_argument("--layout", choices=layouts.CHOICES, default="auto",
                            help="the dataset's layout (default: recognised from its folders)")  # fmt: skip
        parser.add_argument("--split", choices=[s for s in Split.values if s], default="",
                            help="split for pairs the layout puts in none")  # fmt: skip
        parser.add_argument("--category", default="", help="category for pairs that name none")
        parser.add_argument("--dry-run", action="store_true", help="check and report, write nothing")
        add_user_argument(parser)

    def handle(self, *args, path, name, layout, split, category, dry_run, user, **options):
        owner = owner_for(user)
        report = None
        try:
            with (
                ingest.open_source(Path(path)) as source,
                tqdm(unit="pair", desc="checking" if dry_run else "importing") as bar,
            ):

                def progress(done, total):
                    bar.total = total
                    bar.update(done - bar.n)

                if dry_run:
                    report = ingest.run_import(source, layout=layout, split=split, category=category, progress=progress)
                else:
                    with transaction.atomic():
                        dataset = dataset_services.dataset_create(owner=owner, name=name)
                        report = ingest.run_import(source, layout=layout, split=split, category=category,
                                                   dataset=dataset, store=True, progress=progress)  # fmt: skip
                        if not report.ok:
                            raise _Rejected
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        except _Rejected:
            pass
        self.stdout.write(report.text())
        if not report.ok:
            raise CommandError("Nothing was imported: fix the problems above.")
        if dry_run:
            self.stdout.write("Dry run: nothing written.")
            return
        self.stdout.write(f"Imported {report.imported} pairs into dataset {name!r} (id {dataset.pk}).")
        leaks = ingest.audit_after_import(report, dataset).leakage
        if "findings" in leaks:
            self.stdout.write(f"Leakage audit: {leaks['findings']} findings across splits {leaks['by_kind']}.")
        elif leaks:
            self.stdout.write(f"Leakage audit: {leaks['error']}.")
