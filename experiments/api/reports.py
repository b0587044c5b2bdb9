"""A finished run's publication export for API clients: the report as Markdown, LaTeX or
self-contained HTML, and its charts as SVG or PNG, at `?threshold=` (default: the run's own)."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import JSONRenderer

from experiments.api.base import ApiView, PassthroughRenderer
from experiments.api.errors import ApiError, error_responses, from_service_error
from experiments.errors import ServiceError
from experiments.models import LEADERBOARD_RUN_STATES
from experiments.reporting import figures, report, rethreshold
from experiments.runs import selectors as run_selectors
from inference.metrics import RANKING_BINS

THRESHOLD_PARAMETER = OpenApiParameter(
    "threshold",
    float,
    description=(
        "Recompute every threshold-dependent figure at this threshold (exclusive 0..1) from the stored per-pair "
        f"score histograms; rounded to the nearest multiple of 1/{RANKING_BINS}. Default: the run's own."
    ),
)


REPORT_DESCRIPTIONS = {
    "md": "as a Markdown table, with the per-category IoU.",
    "tex": "as a LaTeX `table` (booktabs), every text cell escaped.",
    "html": "as one self-contained HTML file: tables, charts as inline SVG, pair panels as inline PNGs and the "
    "reproducibility record; no external URL, no script.",
}


def run_at_threshold(request, run):
    """`experiments.reporting.rethreshold.run_at_threshold` for `?threshold=`: a value outside (0, 1) or not a
    number does not match the documented parameter, so it answers 400 (not 422)."""
    try:
        return rethreshold.run_at_threshold(run, request.query_params.get("threshold"))
    except ServiceError as exc:
        raise from_service_error(exc, status_code=400) from None


def finished_run_at_threshold(request, pk):
    """The caller's run with a leaderboard, seen at `?threshold=`: 404 for another user's run, 409 before
    it has a leaderboard, 400 for a threshold outside (0, 1)."""
    from django.shortcuts import get_object_or_404

    run = get_object_or_404(run_selectors.runs_visible_to(request.user), pk=pk)
    if run.state not in LEADERBOARD_RUN_STATES:
        raise ApiError(f"The run is {run.state}; its report is ready once it has succeeded (or partly succeeded).",
                       status_code=409)  # fmt: skip
    return run_at_threshold(request, run)


def _report_view(fmt: str, media_type: str):
    class Renderer(PassthroughRenderer):
        pass

    Renderer.media_type, Renderer.format = media_type, fmt

    class ReportView(ApiView):
        renderer_classes = [JSONRenderer, Renderer]

        @extend_schema(
            tags=["runs"],
            summary=f"The run's publication report as {fmt.upper()}",
            description=(
                "The thesis's table (IoU, F1, per-pair means with 95% intervals, time per pair, memory, weights), "
                + REPORT_DESCRIPTIONS[fmt]
                + " 409 until the run has a leaderboard."
            ),
            parameters=[THRESHOLD_PARAMETER],
            responses={(200, media_type): OpenApiTypes.STR, **error_responses(400, 404, 409)},
        )
        def get(self, request, pk):
            view, _ = finished_run_at_threshold(request, pk)
            body, content_type = report.render(view, fmt)
            response = HttpResponse(body, content_type=content_type)
            response["Content-Disposition"] = f'attachment; filename="run-{pk}-report.{fmt}"'
            return response

    ReportView.__name__ = ReportView.__qualname__ = f"RunReport{fmt.title()}View"
    return ReportView


RunReportMdView = _report_view("md", "text/markdown")
RunReportTexView = _report_view("tex", "application/x-tex")
RunReportHtmlView = _report_view("html", "text/html")


class SvgOrPngRenderer(PassthroughRenderer):
    media_type = "image/*"
    format = "image"


class RunChartView(ApiView):
    renderer_classes = [JSONRenderer, SvgOrPngRenderer]

    @extend_schema(
        tags=["runs"],
        summary="A chart of the run as SVG or PNG",
        description=(
            "`name` is `scatter` (IoU against median latency, marker size = peak memory, Pareto front) or `pr` "
            "(pooled precision-recall curves, each detector's point at the threshold marked), then `.svg` or `.png`."
        ),
        parameters=[THRESHOLD_PARAMETER],
        responses={
            (200, "image/svg+xml"): OpenApiTypes.STR,
            (200, "image/png"): OpenApiTypes.BINARY,
            **error_responses(400, 404, 409),
        },
    )
    def get(self, request, pk, name):
        view, _ = finished_run_at_threshold(request, pk)
        chart = figures.chart_file(view, name)
        if chart is None:
            raise ApiError("Charts are scatter or pr, as .svg or .png (e.g. pr.svg).", status_code=404)
        body, content_type = chart
        return HttpResponse(body, content_type=content_type)
