"""Queue a run on Celery, optionally wait for it with a progress bar, then print the leaderboard."""

import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from experiments.errors import ServiceError
from experiments.management.owners import dataset_for
from experiments.models import LEADERBOARD_RUN_STATES, Run, RunState
from experiments.reporting.leaderboard import leaderboard_text
from experiments.runs import services as run_services


class Command(BaseCommand):
    help = "Compare detectors on a dataset: queue a run (a worker must be running: make worker)."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", required=True, help="dataset name or id")
        parser.add_argument("--detectors", required=True, help="comma-separated, e.g. absdiff,ssim,siamese-unet")
        parser.add_argument("--user", default="", help="owner of the dataset (default: the only owner of that name)")
        parser.add_argument("--align", action="store_true", help="warp A onto B before detection")
        parser.add_argument("--threshold", type=float, default=0.5)
        parser.add_argument(
            "--threshold-rule",
            default="fixed",
            help="fixed (--threshold for every detector) or validation (each detector's F1-optimal threshold "
            "on the val split, applied to the scored splits)",
        )
        parser.add_argument(
            "--validation-holdout",
            type=float,
            default=None,
            help="validation rule without a val split: the share of train pairs held out (seeded by --seed)",
        )
        parser.add_argument(
            "--input-size",
            type=int,
            default=None,
            help="override for every learned detector (default: each detector's own size)",
        )
        parser.add_argument(
            "--scaling",
            default="auto",
            help="auto | resize | tile: how learned detectors see pairs larger than their input size "
            "(default auto: tile when B is more than twice the input size, else resize)",
        )
        parser.add_argument(
            "--splits",
            default=None,
            help='comma-separated splits to score, e.g. "test" or "val,test"; "all" for every pair '
            "(default: test when the dataset has test pairs, else every pair)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--baseline", default="")
        parser.add_argument("--wait", action="store_true", help="follow progress, then print the leaderboard")
        parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")

    @staticmethod
    def _splits(text):
        if text is None:
            return None
        return [] if text.strip() == "all" else [s.strip() for s in text.split(",") if s.strip()]

    def handle(self, *args, **options):
        dataset = dataset_for(options["dataset"], options["user"])
        detectors = [d.strip() for d in options["detectors"].split(",") if d.strip()]
        try:
            run = run_services.experiment_start(
                owner=dataset.owner, dataset=dataset, name="", detectors=detectors, align=options["align"],
                threshold=options["threshold"], threshold_rule=options["threshold_rule"],
                validation_holdout=options["validation_holdout"], input_size=options["input_size"], seed=options["seed"],
                scaling=options["scaling"], splits=self._splits(options["splits"]),
                baseline_detector=options["baseline"],
            )  # fmt: skip
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"Queued run {run.pk} ({run.progress_total} pair x detector results).")
        if not options["wait"]:
            return
        run = self._follow(run, options["timeout"])
        if run.state not in LEADERBOARD_RUN_STATES:
            raise CommandError(f"Run {run.pk} {run.state}: {run.error}")
        self.stdout.write(leaderboard_text(run))
        if run.state == RunState.PARTIAL:  # the finished detectors' table, then a non-zero exit with the reasons
            raise CommandError(f"Run {run.pk} partial: {run.error}")

    def _follow(self, run: Run, timeout: float) -> Run:
        deadline = time.monotonic() + timeout
        with tqdm(total=run.progress_total, unit="result", desc=f"run {run.pk}") as bar:
            while True:
                run.refresh_from_db()
                bar.update(run.progress_done - bar.n)
                bar.set_postfix_str(f"{run.state} · {run.progress.get('stage', '')}")
                if run.is_finished:
                    return run
                if time.monotonic() > deadline:
                    raise CommandError(f"Run {run.pk} still {run.state} after {timeout:.0f} s.")
                time.sleep(0.5)
