"""The leakage audit over the API: a dataset's findings (read, or audit now) and a run's scored pairs
that a scored checkpoint trained on."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema

from experiments.api.base import PAGE_PARAMETERS, ApiView, api_datasets
from experiments.api.errors import error_responses
from experiments.api.experiments import visible_run
from experiments.api.serializers import leakage as s
from experiments.datasets import leakage, selectors
from experiments.reporting.contamination import scored_near_trained


class DatasetLeakageView(ApiView):
    @extend_schema(
        tags=["datasets"],
        operation_id="datasets_leakage_list",
        summary="The dataset's leakage audit: a summary and the findings, paged",
        description=(
            "Pairs that show the same scene in two splits: `exact` copies (same decoded pixels), `near`-"
            "duplicates (perceptual hashes within the documented threshold: re-encoding, shifts, crops up to "
            "10%) and overlapping `tile`s of one source image (from LEVIR-style names). See docs/datasets.md."
        ),
        parameters=PAGE_PARAMETERS,
        responses={200: s.LeakagePageOutput, **error_responses(404)},
    )
    def get(self, request, pk):
        dataset = get_object_or_404(api_datasets(request.user), pk=pk)
        response = self.paginate(selectors.leakage_findings(dataset), s.LeakageFindingOutput, "id")
        response.data = {"summary": selectors.leakage_summary(dataset), **response.data}
        return response

    @extend_schema(
        tags=["datasets"],
        summary="Audit the dataset for leakage now",
        description="Replaces the findings; the answer is the new summary.",
        request=None,
        responses={200: s.LeakageSummaryOutput, **error_responses(403, 404)},
    )
    def post(self, request, pk):
        dataset = get_object_or_404(api_datasets(request.user), pk=pk)
        leakage.leakage_audit(dataset=dataset)
        return self.out(s.LeakageSummaryOutput, selectors.leakage_summary(dataset))


class RunLeakageView(ApiView):
    @extend_schema(
        tags=["runs"],
        summary="Scored pairs that a scored checkpoint trained on (exact or near-duplicate)",
        description=(
            "For every checkpoint the run scored whose `trained_on` record names pairs of its dataset: the "
            "run's scored pairs that are exact or near-duplicates of those training or validation pairs."
        ),
        responses={200: s.RunLeakageOutput, **error_responses(404)},
    )
    def get(self, request, pk):
        rows = scored_near_trained(visible_run(request, pk))
        return self.out(s.RunLeakageOutput, {"count": len(rows), "results": rows})
