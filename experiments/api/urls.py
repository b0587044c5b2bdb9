from django.urls import path, re_path, register_converter

from experiments.api import (
    auth,
    batches,
    checkpoints,
    claims,
    compare,
    datasets,
    detectors,
    diff,
    experiments,
    leakage,
    lists,
    media,
    onnx_models,
    predictions,
    reports,
    training,
    webhooks,
)

app_name = "api"

PK_MAX = 2**63 - 1


class IdConverter:
    """An integer; one no database row can have (negative, too large) reads as 0: a JSON 404."""

    regex = "-?[0-9]+"

    def to_python(self, value: str) -> int:
        number = int(value)
        return number if 0 < number <= PK_MAX else 0

    def to_url(self, value) -> str:
        return str(value)


register_converter(IdConverter, "id")

urlpatterns = [
    path("auth/token/", auth.TokenView.as_view(), name="token"),
    path("webhooks/secret/", webhooks.WebhookSecretView.as_view(), name="webhook-secret"),
    path("webhooks/deliveries/", webhooks.WebhookDeliveryListView.as_view(), name="webhook-deliveries"),
    path("detectors/", detectors.DetectorListView.as_view(), name="detector-list"),
    path("datasets/", datasets.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<id:pk>/", datasets.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<id:pk>/pairs/", datasets.DatasetPairsView.as_view(), name="dataset-pairs"),
    path("datasets/<id:pk>/import/", datasets.DatasetImportView.as_view(), name="dataset-import"),
    path("datasets/<id:pk>/leakage/", leakage.DatasetLeakageView.as_view(), name="dataset-leakage"),
    path("datasets/<id:pk>/predictions/", predictions.DatasetPredictionsView.as_view(), name="dataset-predictions"),
    path(
        "datasets/<id:pk>/predictions/<id:set_pk>/",
        predictions.DatasetPredictionDetailView.as_view(),
        name="dataset-prediction-detail",
    ),
    path("experiments/", experiments.ExperimentListView.as_view(), name="experiment-list"),
    path("experiments/<id:pk>/", experiments.ExperimentDetailView.as_view(), name="experiment-detail"),
    path("experiments/<id:pk>/runs/", experiments.ExperimentRunsView.as_view(), name="experiment-runs"),
    path("runs/", lists.RunListView.as_view(), name="run-list"),
    path("compare/", compare.CompareView.as_view(), name="compare"),
    path("benchmarks/", compare.BenchmarksView.as_view(), name="benchmarks"),
    path("runs/<id:pk>/", experiments.RunDetailView.as_view(), name="run-detail"),
    path("runs/<id:pk>/cancel/", experiments.RunCancelView.as_view(), name="run-cancel"),
    path("runs/<id:pk>/retry/", experiments.RunRetryView.as_view(), name="run-retry"),
    path("runs/<id:pk>/clone/", experiments.RunCloneView.as_view(), name="run-clone"),
    path("runs/<id:pk>/ws-ticket/", experiments.RunWsTicketView.as_view(), name="run-ws-ticket"),
    path("runs/<id:pk>/leaderboard/", experiments.RunLeaderboardView.as_view(), name="run-leaderboard"),
    path("runs/<id:pk>/thesis-table/", experiments.RunThesisTableView.as_view(), name="run-thesis-table"),
    path("runs/<id:pk>/report.md", reports.RunReportMdView.as_view(), name="run-report-md"),
    path("runs/<id:pk>/report.tex", reports.RunReportTexView.as_view(), name="run-report-tex"),
    path("runs/<id:pk>/report.html", reports.RunReportHtmlView.as_view(), name="run-report-html"),
    path("runs/<id:pk>/charts/<str:name>", reports.RunChartView.as_view(), name="run-chart"),
    path("runs/<id:pk>/results/", experiments.RunResultsView.as_view(), name="run-results"),
    path("runs/<id:pk>/leakage/", leakage.RunLeakageView.as_view(), name="run-leakage"),
    path("checkpoints/", checkpoints.CheckpointListView.as_view(), name="checkpoint-list"),
    path("checkpoints/<id:pk>/claims/", claims.CheckpointClaimsView.as_view(), name="checkpoint-claims"),
    path("models/<id:pk>/claims/", claims.ModelClaimsView.as_view(), name="model-claims"),
    path(
        "datasets/<id:pk>/predictions/<id:set_pk>/claims/",
        claims.PredictionSetClaimsView.as_view(),
        name="dataset-prediction-claims",
    ),
    path("models/", onnx_models.ModelListView.as_view(), name="model-list"),
    path("models/<id:pk>/", onnx_models.ModelDetailView.as_view(), name="model-detail"),
    path("training/", training.TrainingListView.as_view(), name="training-list"),
    path("training/<id:pk>/", training.TrainingDetailView.as_view(), name="training-detail"),
    path("training/<id:pk>/cancel/", training.TrainingCancelView.as_view(), name="training-cancel"),
    path("batches/", batches.BatchListView.as_view(), name="batch-list"),
    path("batches/<id:pk>/", batches.BatchDetailView.as_view(), name="batch-detail"),
    path("batches/<id:pk>/archive/", batches.BatchArchiveView.as_view(), name="batch-archive"),
    path("diff/", diff.DiffView.as_view(), name="diff"),
    path("media/<path:key>", media.MediaView.as_view(), name="media"),
    re_path(r"^", auth.NotFoundView.as_view()),  # anything else under /api/v1/: a JSON 404, not a page
]
