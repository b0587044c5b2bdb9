from django.urls import path

from experiments.pages import dashboard, datasets, experiments, gallery, media, runs, training, uploads

app_name = "experiments"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("datasets/", datasets.dataset_list, name="dataset_list"),
    path("datasets/<int:pk>/", datasets.dataset_detail, name="dataset_detail"),
    path("datasets/<int:pk>/upload/", uploads.dataset_upload, name="dataset_upload"),
    path("datasets/<int:pk>/import/<str:token>/", uploads.dataset_import, name="dataset_import"),
    path(
        "datasets/<int:pk>/import/<str:token>/confirm/", uploads.dataset_import_confirm, name="dataset_import_confirm"
    ),
    path("experiments/new/", experiments.experiment_create, name="experiment_create"),
    path("runs/<int:pk>/", runs.run_detail, name="run_detail"),
    path("runs/<int:pk>/results/", runs.run_results, name="run_results"),
    path("runs/<int:pk>/leaderboard.<str:fmt>", runs.run_export, name="run_export"),
    path("runs/<int:pk>/gallery/", gallery.run_gallery, name="run_gallery"),
    path("runs/<int:pk>/pairs/<int:pair_pk>/", gallery.pair_detail, name="pair_detail"),
    path("runs/<int:pk>/status/", runs.run_status, name="run_status"),
    path("runs/status/", dashboard.runs_status, name="runs_status"),
    path("runs/<int:pk>/cancel/", runs.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/retry/", runs.run_retry, name="run_retry"),
    path("runs/<int:pk>/clone/", runs.run_clone, name="run_clone"),
    path("training/", training.training_list, name="training_list"),
    path("training/<int:pk>/", training.training_detail, name="training_detail"),
    path("training/<int:pk>/status/", training.training_status, name="training_status"),
    path("training/<int:pk>/cancel/", training.training_cancel, name="training_cancel"),
    path("media/<path:key>", media.media, name="media"),
]
