from django.contrib import admin, messages

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
    TrainingJob,
)
from experiments.runs import services as run_services
from experiments.training import services as training_services


class ImagePairInline(admin.TabularInline):
    model = ImagePair
    extra = 0
    fields = ("name", "category", "split", "b_width", "b_height", "label")
    readonly_fields = fields
    show_change_link = True


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "pair_count", "created_at")
    list_filter = ("created_at",)
    search_fields = ("name", "description", "owner__username")
    inlines = [ImagePairInline]

    @admin.display(description="pairs")
    def pair_count(self, obj):
        return obj.pairs.count()


@admin.register(ImagePair)
class ImagePairAdmin(admin.ModelAdmin):
    list_display = ("name", "dataset", "category", "split", "b_width", "b_height", "has_label")
    list_filter = ("category", "split", "dataset")
    search_fields = ("name", "a_sha256", "b_sha256", "dataset__name")
    readonly_fields = ("a_sha256", "b_sha256", "label_sha256", "image_a", "image_b", "label")


class RunInline(admin.TabularInline):
    model = Run
    extra = 0
    fields = ("state", "progress_done", "progress_total", "created_at", "finished_at")
    readonly_fields = fields
    show_change_link = True


@admin.register(Experiment)
class ExperimentAdmin(admin.ModelAdmin):
    list_display = ("name", "owner", "dataset", "detector_list", "align", "threshold", "created_at")
    list_filter = ("align", "created_at")
    search_fields = ("name", "owner__username", "dataset__name")
    inlines = [RunInline]
    actions = ["start_new_run"]

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


class ResultInline(admin.TabularInline):
    model = Result
    extra = 0
    fields = ("detector", "pair", "iou", "f1", "latency_ms", "from_cache")
    readonly_fields = fields
    can_delete = False


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("id", "experiment", "state", "progress_done", "progress_total", "created_at", "finished_at")
    list_filter = ("state", "created_at")
    search_fields = ("experiment__name", "experiment__owner__username", "error")
    readonly_fields = ("environment", "leaderboard", "progress", "error")
    inlines = [ResultInline]
    actions = ["cancel_runs", "retry_runs", "clone_runs"]

    def _apply(self, request, queryset, action):
        for run in queryset:
            try:
                action(run=run)
            except ServiceError as exc:
                self.message_user(request, f"Run {run.pk}: {exc.message}", messages.ERROR)

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
    search_fields = ("pair__name", "detector")


@admin.register(ModelCheckpoint)
class ModelCheckpointAdmin(admin.ModelAdmin):
    list_display = ("detector", "sha256", "dataset", "epochs", "is_public", "created_at")
    list_filter = ("detector", "is_public")
    search_fields = ("sha256", "detector")


@admin.register(PairAlignment)
class PairAlignmentAdmin(admin.ModelAdmin):
    list_display = ("run", "pair", "method", "ok", "inliers", "reprojection_error")
    list_filter = ("method", "ok")


@admin.register(TrainingJob)
class TrainingJobAdmin(admin.ModelAdmin):
    list_display = ("id", "detector", "dataset", "owner", "state", "created_at", "finished_at", "checkpoint")
    list_filter = ("state", "detector")
    search_fields = ("detector", "dataset__name", "owner__username", "error")
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
    search_fields = ("idempotency_key", "owner__username")
