"""Several runs side by side, and the benchmark matrix (`experiments.reporting.comparison`, `.benchmarks`)."""

import re

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from experiments.api.base import ApiView
from experiments.api.errors import ApiError, error_responses
from experiments.api.lists import ID_SCHEMA
from experiments.reporting import benchmarks, comparison


class RunSummaryOutput(serializers.Serializer):
    id = serializers.IntegerField()
    state = serializers.CharField()
    experiment = serializers.IntegerField()
    experiment_name = serializers.CharField()
    dataset = serializers.IntegerField()
    dataset_name = serializers.CharField()
    detectors = serializers.ListField(child=serializers.CharField())
    settings = serializers.DictField()
    created_at = serializers.DateTimeField()
    protocol = serializers.DictField(help_text="what its figures were measured under (see docs/engine.md, Protocol)")


class PairedTestOutput(serializers.Serializer):
    detector = serializers.CharField()
    run = serializers.IntegerField()
    baseline_run = serializers.IntegerField()
    n = serializers.IntegerField(help_text="shared pairs (label with change) both runs scored")
    wins = serializers.IntegerField()
    ties = serializers.IntegerField()
    losses = serializers.IntegerField()
    mean_difference = serializers.FloatField(allow_null=True, help_text="run minus baseline run, per-pair IoU")
    ci = serializers.ListField(child=serializers.FloatField(), allow_null=True, help_text="95% bootstrap CI")
    wilcoxon_p = serializers.FloatField(allow_null=True)
    wilcoxon_p_holm = serializers.FloatField(allow_null=True, help_text="Holm over the runs of one detector")
    test = serializers.CharField()
    small_sample = serializers.BooleanField()
    protocol_differs = serializers.ListField(
        child=serializers.CharField(), help_text="what of this run's protocol differs from the baseline run's"
    )


class CompareOutput(serializers.Serializer):
    runs = RunSummaryOutput(many=True)
    baseline_run = serializers.IntegerField(allow_null=True)
    detectors = serializers.ListField(child=serializers.CharField())
    rows = serializers.ListField(
        child=serializers.DictField(),
        help_text="one per detector and run: `run`, the leaderboard's flat columns (as `/runs/{id}/leaderboard/`) "
        "and `protocol_differs` (what of its protocol differs from the baseline run's; empty: like with like)",
    )
    tests = PairedTestOutput(many=True)
    matched_by = serializers.CharField()
    same_protocol = serializers.BooleanField(help_text="only rows and tests of the baseline run's protocol")


class BenchmarkCellOutput(serializers.Serializer):
    run = serializers.IntegerField()
    f1 = serializers.FloatField(allow_null=True, help_text="pooled F1")
    f1_ci = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="pooled F1's 95% pair-level bootstrap interval"
    )
    iou = serializers.FloatField(allow_null=True, help_text="pooled IoU")
    iou_ci = serializers.ListField(
        child=serializers.FloatField(), allow_null=True, help_text="pooled IoU's 95% pair-level bootstrap interval"
    )
    rank_group = serializers.CharField(
        allow_null=True, help_text="the ranks the detector could hold in that run (e.g. '1-2'); see docs/engine.md"
    )
    weights = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()
    threshold = serializers.FloatField(allow_null=True, help_text="what its masks were cut at")
    threshold_source = serializers.CharField(help_text="fixed or validation (N pairs)")
    protocol = serializers.DictField(child=serializers.CharField(), help_text="scored splits, threshold, alignment")
    protocol_differs = serializers.ListField(
        child=serializers.CharField(), help_text="what differs from the protocol most cells of its dataset share"
    )


class BenchmarkRowOutput(serializers.Serializer):
    detector = serializers.CharField()
    cells = serializers.ListField(child=BenchmarkCellOutput(allow_null=True), help_text="per dataset; null: never run")


class BenchmarkDatasetOutput(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class BenchmarksOutput(serializers.Serializer):
    datasets = BenchmarkDatasetOutput(many=True, help_text="one per column")
    rows = BenchmarkRowOutput(many=True)


RUNS_PATTERN = r"^([0-9]+(,[0-9]+)*)?$"  # empty: not given


def _baseline(values: list[str]) -> int | None:
    """The `baseline` run id as the schema declares it (an integer from 1 to 2**63 - 1), or None."""
    for value in values:
        if not (value.isascii() and value.isdigit() and 0 < int(value) <= ID_SCHEMA["maximum"]):
            raise ApiError(f"baseline must be a run id (a positive whole number); got {value[:40]!r}.",
                           field="baseline")  # fmt: skip
    return int(values[-1]) if values else None


def _flag(values: list[str], name: str) -> bool:
    for value in values:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ApiError(f"{name} must be true or false; got {value[:40]!r}.", field=name)
    return bool(values) and values[-1].lower() in ("true", "1")


class CompareView(ApiView):
    @extend_schema(
        tags=["runs"],
        operation_id="compare_runs",
        summary="Compare finished runs",
        description=(
            "`runs=12,15` (two or more ids, the first is the baseline unless `baseline` names another), or "
            "`detector=absdiff` for your newest finished runs that scored it (at most "
            f"{comparison.MAX_RUNS}). Rows: detector x run with the leaderboard's columns. Tests: for each "
            "detector, each run's per-pair IoU against the baseline run's on the pairs both scored (matched "
            "by pair fingerprint, labels with change), Wilcoxon signed-rank, Holm-adjusted per detector. "
            "Neither `runs` nor `detector`, fewer than two runs (or more than the limit), or a `baseline` "
            "outside `runs`: 422. 404 for a run you cannot see, 409 for one without a leaderboard yet."
        ),
        parameters=[
            OpenApiParameter(
                "runs",
                {"type": "string", "pattern": RUNS_PATTERN},
                description="run ids separated by commas, e.g. `12,15`",
            ),
            OpenApiParameter("detector", str, description="compare every finished run of this detector"),
            OpenApiParameter("baseline", ID_SCHEMA, description="one of `runs`"),
            OpenApiParameter(
                "same_protocol",
                bool,
                description="`true`: only rows (and tests) whose protocol equals the baseline run's for that detector",
            ),
        ],
        responses={200: CompareOutput, **error_responses(400, 404, 409)},
    )
    def get(self, request):
        detector = request.query_params.get("detector", "").strip()[:100]
        runs_values = request.query_params.getlist("runs")
        for value in runs_values:  # the schema's syntax (400); the rules below answer 422
            if not re.fullmatch(RUNS_PATTERN, value):
                raise ApiError(f"runs must be run ids separated by commas (runs=12,15); got {value[:40]!r}.",
                               field="runs")  # fmt: skip
        runs_param = ",".join(value for value in runs_values if value)
        baseline = _baseline(request.query_params.getlist("baseline"))
        if not runs_param and not detector:
            raise ApiError("Say which runs to compare: runs=12,15 or detector=<name>.", status_code=422, field="runs")
        try:
            run_ids = comparison.parse_run_ids(runs_param) if runs_param else None
        except ValueError as exc:
            raise ApiError(str(exc), status_code=422, field="runs") from None
        if run_ids is not None:
            if baseline is not None and baseline not in run_ids:
                raise ApiError("baseline must be one of the run ids in runs.", status_code=422, field="baseline")
            runs = comparison.runs_by_ids(request.user, run_ids)
        else:
            runs = comparison.runs_of_detector(request.user, detector)
        same = _flag(request.query_params.getlist("same_protocol"), "same_protocol")
        data = comparison.compare_runs(runs, baseline_id=baseline, detector=detector, same_protocol=same)
        return Response(CompareOutput(data).data)


class BenchmarksView(ApiView):
    @extend_schema(
        tags=["runs"],
        operation_id="benchmarks",
        summary="Detector x dataset matrix of pooled F1 and IoU",
        description="From your newest finished run per detector and dataset; each cell names its run, its "
        "threshold and what of its protocol differs from the one most cells of its dataset share.",
        parameters=[
            OpenApiParameter(
                "same_protocol", bool, description="`true`: leave out (null) each cell whose protocol differs"
            ),
        ],
        responses={200: BenchmarksOutput, **error_responses(400)},
    )
    def get(self, request):
        same = _flag(request.query_params.getlist("same_protocol"), "same_protocol")
        return Response(BenchmarksOutput(benchmarks.benchmark_matrix(request.user, same_protocol=same)).data)
