from django.urls import path, re_path, register_converter

from experiments.api import views

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
    path("auth/token/", views.TokenView.as_view(), name="token"),
    path("detectors/", views.DetectorListView.as_view(), name="detector-list"),
    path("datasets/", views.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<id:pk>/", views.DatasetDetailView.as_view(), name="dataset-detail"),
    path("datasets/<id:pk>/pairs/", views.DatasetPairsView.as_view(), name="dataset-pairs"),
    path("datasets/<id:pk>/import/", views.DatasetImportView.as_view(), name="dataset-import"),
    path("experiments/", views.ExperimentListView.as_view(), name="experiment-list"),
    path("experiments/<id:pk>/", views.ExperimentDetailView.as_view(), name="experiment-detail"),
    path("experiments/<id:pk>/runs/", views.ExperimentRunsView.as_view(), name="experiment-runs"),
    path("runs/<id:pk>/", views.RunDetailView.as_view(), name="run-detail"),
    path("runs/<id:pk>/cancel/", views.RunCancelView.as_view(), name="run-cancel"),
    path("runs/<id:pk>/retry/", views.RunRetryView.as_view(), name="run-retry"),
    path("runs/<id:pk>/clone/", views.RunCloneView.as_view(), name="run-clone"),
    path("runs/<id:pk>/ws-ticket/", views.RunWsTicketView.as_view(), name="run-ws-ticket"),
    path("runs/<id:pk>/leaderboard/", views.RunLeaderboardView.as_view(), name="run-leaderboard"),
    path("runs/<id:pk>/results/", views.RunResultsView.as_view(), name="run-results"),
    path("checkpoints/", views.CheckpointListView.as_view(), name="checkpoint-list"),
    path("training/", views.TrainingListView.as_view(), name="training-list"),
    path("training/<id:pk>/", views.TrainingDetailView.as_view(), name="training-detail"),
    path("training/<id:pk>/cancel/", views.TrainingCancelView.as_view(), name="training-cancel"),
    path("batches/", views.BatchListView.as_view(), name="batch-list"),
    path("batches/<id:pk>/", views.BatchDetailView.as_view(), name="batch-detail"),
    path("batches/<id:pk>/archive/", views.BatchArchiveView.as_view(), name="batch-archive"),
    path("diff/", views.DiffView.as_view(), name="diff"),
    path("media/<path:key>", views.MediaView.as_view(), name="media"),
    re_path(r"^", views.NotFoundView.as_view()),  # anything else under /api/v1/: a JSON 404, not a page
]
