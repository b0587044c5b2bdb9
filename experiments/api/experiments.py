"""Experiments and their runs: create, read, delete, start, cancel, retry, clone, follow, and a
finished run's leaderboard and per-pair results."""

from django.db.models import F, FloatField, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from experiments.api import lists, reports
from experiments.api import serializers as s
from experiments.api.base import PAGE_PARAMETERS, ApiView, CSVRenderer, api_datasets, paged
from experiments.api.errors import ApiError, error_responses
from experiments.live import tickets as ws_tickets
from experiments.models import LEADERBOARD_RUN_STATES
from experiments.reporting import leaderboard, thesis_table
from experiments.runs import selectors as run_selectors
from experiments.runs import services as run_services


def api_experiments(user):
    """The user's experiments, without the ones that back batch jobs."""
    return run_selectors.experiments_visible_to(user).exclude(runs__batch_jobs__isnull=False)


def visible_run(request, pk):
    return get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)


def accepted_run(view, run, status_code=202) -> Response:
    location = s.page_url(view.request, "run-detail", pk=run.pk)
    return view.out(s.RunOutput, run, status_code, Location=location)


# --------------------------------------------------------------------------- experiments
class ExperimentListView(ApiView):
    parser_classes = [JSONParser]  # lists and a dict of settings: JSON only (a form cannot say null or {})

    @extend_schema(
        tags=["experiments"],
        operation_id="experiments_list",
        summary="List your experiments",
        description="Newest first. Filters combine (all must hold); `state` is the newest run's.",
        parameters=[*lists.LIST_PARAMETERS, *PAGE_PARAMETERS],
        responses={200: paged(s.ExperimentOutput), **error_responses(400, 404)},
    )
    def get(self, request):
        filters = lists.list_filters(request)
        experiments = run_selectors.filter_experiments(run_selectors.listed_experiments(request.user), filters)
        return self.paginate(experiments, s.ExperimentOutput, "-created_at")

    @extend_schema(
        tags=["experiments"],
        summary="Create an experiment",
        description="Detectors by registry name (see `/api/v1/detectors/`); settings as on the page.",
        request=s.ExperimentInput,
        responses={201: s.ExperimentOutput, **error_responses(400, 403, 404, 415)},
    )
    def post(self, request):
        data = dict(self.valid(s.ExperimentInput).validated_data)
        dataset = api_datasets(request.user).filter(pk=data.pop("dataset")).first()
        if dataset is None:
            raise ApiError("Dataset not found.", status_code=404, field="dataset")
        experiment = run_services.experiment_create(owner=request.user, dataset=dataset, **data)
        return self.out(s.ExperimentOutput, experiment, 201)


class ExperimentDetailView(ApiView):
    @extend_schema(
        tags=["experiments"], summary="Read an experiment", responses={200: s.ExperimentOutput, **error_responses(404)}
    )
    def get(self, request, pk):
        return self.out(s.ExperimentOutput, get_object_or_404(api_experiments(request.user), pk=pk))

    @extend_schema(
        tags=["experiments"],
        summary="Delete an experiment, its runs and their files",
        description="Refused (409) while a run is active.",
        responses={204: None, **error_responses(403, 404, 409)},
    )
    def delete(self, request, pk):
        run_services.experiment_delete(experiment=get_object_or_404(api_experiments(request.user), pk=pk))
        return Response(status=204)


class ExperimentRunsView(ApiView):
    @extend_schema(
        tags=["runs"],
        operation_id="experiments_runs_list",
        summary="List an experiment's runs",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.RunOutput), **error_responses(404)},
    )
    def get(self, request, pk):
        experiment = get_object_or_404(api_experiments(request.user), pk=pk)
        return self.paginate(
            run_selectors.runs_visible_to(request.user).filter(experiment=experiment), s.RunOutput, "-created_at"
        )

    @extend_schema(
        tags=["runs"],
        summary="Start a run",
        description="Queues the run; `Location` points at it. Follow it with `GET` or over the WebSocket.",
        request=None,
        responses={202: s.RunOutput, **error_responses(400, 403, 404)},
    )
    def post(self, request, pk):
        experiment = get_object_or_404(api_experiments(request.user), pk=pk)
        return accepted_run(self, run_services.run_start(experiment=experiment))


# --------------------------------------------------------------------------- runs
class RunDetailView(ApiView):
    @extend_schema(
        tags=["runs"], summary="A run's state and progress", responses={200: s.RunOutput, **error_responses(404)}
    )
    def get(self, request, pk):
        return self.out(s.RunOutput, visible_run(request, pk))


class RunCancelView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="Cancel a queued or running run",
        description="A queued run is cancelled at once; a running one at the next batch.",
        request=None,
        responses={200: s.RunOutput, **error_responses(403, 404, 409)},
    )
    def post(self, request, pk):
        return self.out(s.RunOutput, run_services.run_cancel(run=visible_run(request, pk)))


class RunRetryView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="Queue a failed or cancelled run again",
        request=None,
        responses={202: s.RunOutput, **error_responses(403, 404, 409)},
    )
    def post(self, request, pk):
        return accepted_run(self, run_services.run_retry(run=visible_run(request, pk)))


class RunCloneView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="Start a new run with the same record (pinned weights)",
        request=None,
        responses={202: s.RunOutput, **error_responses(400, 403, 404)},
    )
    def post(self, request, pk):
        return accepted_run(self, run_services.run_clone(run=visible_run(request, pk)))


class RunWsTicketView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="A one-time ticket for the run's WebSocket",
        description=(
            f"Open `url` within {ws_tickets.TICKET_TTL_S} s; the ticket works once and only for this run. "
            "The socket sends a snapshot, then `progress` and `state` events."
        ),
        request=None,
        responses={201: s.WsTicketOutput, **error_responses(403, 404)},
    )
    def post(self, request, pk):
        run = visible_run(request, pk)
        ticket = ws_tickets.ticket_create(user=request.user, run_id=run.pk)
        scheme = "wss" if request.is_secure() else "ws"
        url = f"{scheme}://{request.get_host()}/ws/runs/{run.pk}/?ticket={ticket}"
        return Response({"ticket": ticket, "url": url, "expires_in": ws_tickets.TICKET_TTL_S}, status=201)


# --------------------------------------------------------------------------- a finished run's numbers
class RunLeaderboardView(ApiView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        tags=["runs"],
        summary="The run's leaderboard",
        description=(
            "JSON, or CSV with `?format=csv` (one ranked row per detector). 409 until the run succeeded, or ended "
            "`partial`: then the detectors that finished are ranked and each failed one is a row with its reason "
            "in `failed` (its figures empty). With `?threshold=` every threshold-dependent figure is recomputed "
            "from the stored per-pair score histograms (`threshold` in the answer says at which value, rounded to "
            "the exact grid, and what could not be recomputed); 400 outside (0, 1)."
        ),
        parameters=[reports.THRESHOLD_PARAMETER],
        responses={
            (200, "application/json"): s.LeaderboardOutput,
            (200, "text/csv"): OpenApiTypes.STR,
            **error_responses(400, 404, 409),
        },
    )
    def get(self, request, pk):
        run = visible_run(request, pk)
        if run.state not in LEADERBOARD_RUN_STATES:
            raise ApiError(
                f"The run is {run.state}; its leaderboard is ready once it has succeeded (or partly succeeded).",
                status_code=409,
            )
        run, threshold = reports.run_at_threshold(request, run)
        if request.accepted_renderer.format == "csv":
            response = HttpResponse(leaderboard.leaderboard_csv(run), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-leaderboard.csv"'
            return response
        return Response({**leaderboard.leaderboard_json(run), "threshold": threshold})


class RunThesisTableView(ApiView):
    renderer_classes = [JSONRenderer, CSVRenderer]

    @extend_schema(
        tags=["runs"],
        summary="The thesis's summary table of a run",
        description=(
            "Detector, pooled IoU, time per pair (median at batch 1), peak memory and weights source, in the "
            "leaderboard's order: the thesis's table for this run. JSON, or CSV with `?format=csv`. Uploaded "
            "predictions have no time or memory (`measured_here` false). 409 until the run has a leaderboard."
        ),
        responses={
            (200, "application/json"): s.ThesisTableOutput,
            (200, "text/csv"): OpenApiTypes.STR,
            **error_responses(404, 409),
        },
    )
    def get(self, request, pk):
        run = visible_run(request, pk)
        if run.state not in LEADERBOARD_RUN_STATES:
            raise ApiError(
                f"The run is {run.state}; its summary is ready once it has succeeded (or partly succeeded).",
                status_code=409,
            )
        if request.accepted_renderer.format == "csv":
            response = HttpResponse(thesis_table.thesis_csv(run), content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-thesis-table.csv"'
            return response
        rows = thesis_table.thesis_records(run)
        return Response({"run": run.pk, "labels": thesis_table.THESIS_LABELS, "rows": rows})


def sort_key(ordering: str):
    """What a cursor sorts on for one of `RESULT_ORDERINGS` (or none: by id).

    Metrics are null for unlabelled pairs and a cursor cannot hold NULL, so nulls sort as -1.
    """
    field = ordering.lstrip("-")
    if not field:
        return F("pk")
    if field in run_selectors.FILTERABLE_METRICS:
        return Coalesce(F(field), Value(-1.0), output_field=FloatField())
    return F(field)


class RunResultsView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="The run's per-pair results",
        description=(
            "Filter by `detector`, `category` and metric ranges (`iou_min`, `iou_max`, `f1_min`, `f1_max`, "
            "`latency_ms_min`, ...); order with `ordering` (`-iou` = worst last). Each result links its heatmap, "
            "mask and error map (`/api/v1/media/...`, token or session)."
        ),
        parameters=[s.ResultFilterInput, *PAGE_PARAMETERS],
        responses={200: paged(s.ResultOutput), **error_responses(400, 404)},
    )
    def get(self, request, pk):
        run = visible_run(request, pk)
        filters = self.valid(s.ResultFilterInput, request.query_params)
        data = filters.validated_data
        try:
            results = run_selectors.run_results_filtered(
                run, detector=data.get("detector"), category=data.get("category"), metric_ranges=filters.metric_ranges()
            )
        except ValueError as exc:  # e.g. a minimum above the maximum: as the schema allows, but empty
            raise ApiError(str(exc), status_code=422) from None
        ordering = data.get("ordering") or ""
        results = results.annotate(sort_key=sort_key(ordering))
        return self.paginate(results, s.ResultOutput, ("-" if ordering.startswith("-") else "") + "sort_key")
