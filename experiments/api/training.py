"""Training jobs: start one on your dataset, follow it, cancel it."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema

from experiments.api import serializers as s
from experiments.api.base import PAGE_PARAMETERS, ApiView, api_datasets, paged
from experiments.api.errors import ApiError, error_responses
from experiments.training import selectors as training_selectors
from experiments.training import services as training_services


def visible_training(request, pk):
    return get_object_or_404(training_selectors.training_jobs_visible_to(request.user), pk=pk)


class TrainingListView(ApiView):
    @extend_schema(
        tags=["training"],
        operation_id="training_list",
        summary="Your training jobs",
        parameters=PAGE_PARAMETERS,
        responses={200: paged(s.TrainingOutput), **error_responses(404)},
    )
    def get(self, request):
        return self.paginate(training_selectors.training_jobs_visible_to(request.user), s.TrainingOutput, "-created_at")

    @extend_schema(
        tags=["training"],
        summary="Train a learned detector on one of your datasets",
        description="Queued on the `gpu` workers; the dataset needs at least two labelled pairs.",
        request=s.TrainingInput,
        responses={202: s.TrainingOutput, **error_responses(400, 403, 404, 413, 415)},
    )
    def post(self, request):
        data = dict(self.valid(s.TrainingInput).validated_data)
        dataset = api_datasets(request.user).filter(pk=data.pop("dataset")).first()
        if dataset is None:
            raise ApiError("Dataset not found.", status_code=404, field="dataset")
        job = training_services.training_start(owner=request.user, dataset=dataset, **data)
        return self.out(s.TrainingOutput, job, 202, Location=s.page_url(request, "training-detail", pk=job.pk))


class TrainingDetailView(ApiView):
    @extend_schema(
        tags=["training"],
        summary="A training job's state and progress",
        responses={200: s.TrainingOutput, **error_responses(404)},
    )
    def get(self, request, pk):
        return self.out(s.TrainingOutput, visible_training(request, pk))


class TrainingCancelView(ApiView):
    @extend_schema(
        tags=["training"],
        summary="Cancel a training job",
        request=None,
        responses={200: s.TrainingOutput, **error_responses(403, 404, 409)},
    )
    def post(self, request, pk):
        return self.out(s.TrainingOutput, training_services.training_cancel(job=visible_training(request, pk)))
