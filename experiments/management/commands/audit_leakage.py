from django.core.management.base import BaseCommand

from experiments.datasets import leakage, selectors
from experiments.management.owners import dataset_for


class Command(BaseCommand):
    help = (
        "Audit a dataset for leakage: the same scene in two splits (exact copies, near-duplicates, "
        "overlapping tiles of one source image). Replaces the dataset's findings; see docs/datasets.md."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="dataset name or id")
        parser.add_argument("--user", default="", help="owner of the dataset (default: the only owner of that name)")
        parser.add_argument("--list", type=int, default=20, help="findings to print (default 20)")

    def handle(self, *args, **options):
        dataset = dataset_for(options["dataset"], options["user"])
        summary = leakage.leakage_audit(dataset=dataset)
        kinds = ", ".join(f"{kind} {n}" for kind, n in summary["by_kind"].items())
        self.stdout.write(
            f"{dataset.name}: {summary['pairs']} pairs, {summary['findings']} findings ({kinds}); "
            f"near-duplicate threshold {summary['threshold']} of 64 bits; {summary['seconds']:.2f} s"
        )
        for finding in selectors.leakage_findings(dataset)[: options["list"]]:
            self.stdout.write(
                f"  {finding.kind:5} {finding.pair.split or '-'}/{finding.pair.name} ~ "
                f"{finding.other.split or '-'}/{finding.other.name}  {finding.images} {finding.distance}  {finding.detail}"
            )
