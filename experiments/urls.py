from django.urls import path

from experiments import views
from experiments.pages import datasets, runs, training

app_name = "experiments"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("datasets/", views.dataset_list, name="dataset_list"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset_detail"),
    path("datasets/<int:pk>/upload/", datasets.dataset_upload, name="dataset_upload"),
    path("datasets/<int:pk>/import/<str:token>/", datasets.dataset_import, name="dataset_import"),
    path(
        "datasets/<int:pk>/import/<str:token>/confirm/", datasets.dataset_import_confirm, name="dataset_import_confirm"
    ),
    path("experiments/new/", views.experiment_create, name="experiment_create"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/results/", views.run_results, name="run_results"),
    path("runs/<int:pk>/leaderboard.<str:fmt>", views.run_export, name="run_export"),
    path("runs/<int:pk>/gallery/", runs.run_gallery, name="run_gallery"),
    path("runs/<int:pk>/pairs/<int:pair_pk>/", runs.pair_detail, name="pair_detail"),
    path("runs/<int:pk>/status/", views.run_status, name="run_status"),
    path("runs/status/", views.runs_status, name="runs_status"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/retry/", views.run_retry, name="run_retry"),
    path("runs/<int:pk>/clone/", views.run_clone, name="run_clone"),
    path("training/", training.training_list, name="training_list"),
    path("training/<int:pk>/", training.training_detail, name="training_detail"),
    path("training/<int:pk>/status/", training.training_status, name="training_status"),
    path("training/<int:pk>/cancel/", training.training_cancel, name="training_cancel"),
    path("media/<path:key>", views.media, name="media"),
]
