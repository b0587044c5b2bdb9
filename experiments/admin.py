from django.contrib import admin, messages
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from experiments.datasets import services as dataset_services
from experiments.errors import ServiceError
from experiments.models import (
    BatchJob,
    Dataset,
    Experiment,
    ImagePair,
    ModelCheckpoint,
    PairAlignment,
    Result,
    Run,
    TaskLease,
    TrainingJob,
)
from experiments.runs import services as run_services
from experiments.training import services as training_services


def related_link(model: str, field: str, obj, count: int, noun: str):
    """A count of related rows and a link to their filtered list (instead of an unbounded inline)."""
    url = reverse(f"admin:experiments_{model}_changelist") + f"?{field}={obj.pk}"
    return format_html('<a href="{}">{} {}</a>', url, count, noun)


class ServiceDeleteMixin:
    """ "Delete" (one object or the "delete selected" action) goes through the domain's service, so
    the objects' files leave storage too; a refusal (e.g. objects still in use) is shown as a message."""

    delete_service = None  # function(obj)

    def delete_model(self, request, obj):
        try:
            type(self).delete_service(obj)
        except ServiceError as exc:
            self.message_user(request, f"{obj}: {exc.message}", messages.ERROR)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


@admin.register(Dataset)
class DatasetAdmin(ServiceDeleteMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "pair_count", "created_at")
    list_filter = ("created_at",)
    list_select_related = ("owner",)
    search_fields = ("name", "description", "owner__username")
    raw_id_fields = ("owner",)
    readonly_fields = ("pair_list",)

    @staticmethod
    def delete_service(dataset):
        dataset_services.dataset_delete(dataset=dataset)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_pair_count=Count("pairs"))

    @admin.display(description="pairs", ordering="_pair_count")
    def pair_count(self, obj):
        return obj._pair_count

    @admin.display(description="pairs")
    def pair_list(self, obj):
        return related_link("imagepair", "dataset__id__exact", obj, obj._pair_count, "pairs")


@admin.register(ImagePair)
class ImagePairAdmin(admin.ModelAdmin):
    list_display = ("name", "dataset", "category", "split", "b_width", "b_height", "has_label")
    list_filter = ("category", "split")
    list_select_related = ("dataset",)
    search_fields = ("name", "a_sha256", "b_sha256", "dataset__name")
    raw_id_fields = ("dataset",)
    readonly_fields = ("a_sha256", "b_sha256", "label_sha256", "image_a", "image_b", "label")


@admin.register(Experiment)
class ExperimentAdmin(ServiceDeleteMixin, admin.ModelAdmin):
    list_display = ("name", "owner", "dataset", "detector_list", "align", "threshold", "created_at")
    list_filter = ("align", "created_at")
    list_select_related = ("owner", "dataset")
    search_fields = ("name", "owner__username", "dataset__name")
    raw_id_fields = ("owner", "dataset")
    readonly_fields = ("run_list",)
    actions = ["start_new_run"]

    @staticmethod
    def delete_service(experiment):
        run_services.experiment_delete(experiment=experiment)

    @admin.display(description="runs")
    def run_list(self, obj):
        return related_link("run", "experiment__id__exact", obj, obj.runs.count(), "runs")

    @admin.display(description="detectors")
    def detector_list(self, obj):
        return ", ".join(obj.detectors)

    @admin.action(description="Start a new run")
    def start_new_run(self, request, queryset):
        for experiment in queryset:
            try:
                run_services.run_start(experiment=experiment)
            except ServiceError as exc:
                self.message_user(request, f"{experiment}: {exc.message}", messages.ERROR)


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "experiment", "state", "progress_done", "progress_total", "created_at", "finished_at")
    list_filter = ("state", "created_at")
    list_select_related = ("experiment",)
    search_fields = ("experiment__name", "experiment__owner__username", "error")
    raw_id_fields = ("experiment", "cloned_from")
    readonly_fields = ("environment", "leaderboard", "progress", "error", "result_list")
    actions = ["cancel_runs", "retry_runs", "clone_runs"]

    def _apply(self, request, queryset, action):
        for run in queryset:
            try:
                action(run=run)
            except ServiceError as exc:
                self.message_user(request, f"Run {run.pk}: {exc.message}", messages.ERROR)

    @admin.display(description="results")
    def result_list(self, obj):
        return related_link("result", "run__id__exact", obj, obj.results.count(), "results")

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request, queryset):
        self._apply(request, queryset, run_services.run_cancel)

    @admin.action(description="Retry selected runs")
    def retry_runs(self, request, queryset):
        self._apply(request, queryset, run_services.run_retry)

    @admin.action(description="Re-run (clone) selected runs")
    def clone_runs(self, request, queryset):
        self._apply(request, queryset, run_services.run_clone)


@admin.register(Result)
class ResultAdmin(admin.ModelAdmin):
    list_display = ("run", "pair", "detector", "iou", "f1", "latency_ms", "peak_memory_mb", "from_cache")
    list_filter = ("detector", "from_cache")
    list_select_related = ("run__experiment", "pair")
    search_fields = ("pair__name", "detector")
    raw_id_fields = ("run", "pair")


@admin.register(ModelCheckpoint)
class ModelCheckpointAdmin(admin.ModelAdmin):
    list_display = ("detector", "sha256", "dataset", "epochs", "is_public", "created_at")
    list_filter = ("detector", "is_public")
    list_select_related = ("dataset",)
    raw_id_fields = ("owner", "dataset")
    search_fields = ("sha256", "detector")


@admin.register(PairAlignment)
class PairAlignmentAdmin(admin.ModelAdmin):
    list_display = ("run", "pair", "method", "ok", "inliers", "reprojection_error")
    list_filter = ("method", "ok")
    list_select_related = ("run", "pair")
    raw_id_fields = ("run", "pair")


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ("id", "detector", "dataset", "owner", "state", "created_at", "finished_at", "checkpoint")
    list_filter = ("state", "detector")
    list_select_related = ("dataset", "owner", "checkpoint")
    search_fields = ("detector", "dataset__name", "owner__username", "error")
    raw_id_fields = ("owner", "dataset", "checkpoint")
    readonly_fields = ("progress", "config", "error")
    actions = ["cancel_jobs"]

    @admin.action(description="Cancel selected training jobs")
    def cancel_jobs(self, request, queryset):
        for job in queryset:
            try:
                training_services.training_cancel(job=job)
            except ServiceError as exc:
                self.message_user(request, f"Training job {job.pk}: {exc.message}", messages.ERROR)


@admin.register(BatchJob)
class BatchJobAdmin(admin.ModelAdmin):
    list_display = ("id", "owner", "idempotency_key", "run", "created_at")
    list_select_related = ("owner", "run__experiment")
    raw_id_fields = ("owner", "run")
    search_fields = ("idempotency_key", "owner__username")


@admin.register(TaskLease)
class TaskLeaseAdmin(admin.ModelAdmin):
    """Read-only: which tasks workers hold, their deliveries and deaths (`experiments.task_leases`)."""

    list_display = ("task_name", "work", "deliveries", "deaths", "running", "heartbeat_at", "finished_at")
    list_filter = ("task_name", "running")
    search_fields = ("task_id", "work")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
