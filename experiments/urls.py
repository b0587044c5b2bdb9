from django.urls import path

from experiments.pages import compare as compare_pages
from experiments.pages import dashboard, datasets, experiments, gallery, media, onnx_models, runs, training, uploads
from experiments.pages import deletes as delete_pages
from experiments.pages import leakage as leakage_pages
from experiments.pages import lists as list_pages
from experiments.pages import predictions as prediction_pages

app_name = "experiments"

urlpatterns = [
    path("", dashboard.dashboard, name="dashboard"),
    path("datasets/", datasets.dataset_list, name="dataset_list"),
    path("datasets/<int:pk>/", datasets.dataset_detail, name="dataset_detail"),
    path("datasets/<int:pk>/predictions/", prediction_pages.prediction_upload, name="prediction_upload"),
    path(
        "datasets/<int:pk>/predictions/<int:set_pk>/delete/",
        prediction_pages.prediction_delete,
        name="prediction_delete",
    ),
    path("datasets/<int:pk>/upload/", uploads.dataset_upload, name="dataset_upload"),
    path("datasets/<int:pk>/leakage/audit/", leakage_pages.dataset_leakage_audit, name="dataset_leakage_audit"),
    path("datasets/<int:pk>/import/<str:token>/", uploads.dataset_import, name="dataset_import"),
    path(
        "datasets/<int:pk>/import/<str:token>/confirm/", uploads.dataset_import_confirm, name="dataset_import_confirm"
    ),
    path("experiments/new/", experiments.experiment_create, name="experiment_create"),
    path("experiments/", list_pages.experiment_list, name="experiment_list"),
    path("experiments/<int:pk>/", list_pages.experiment_detail, name="experiment_detail"),
    path("runs/", list_pages.run_list, name="run_list"),
    path("compare/", compare_pages.compare, name="compare"),
    path("benchmarks/", compare_pages.benchmark_matrix, name="benchmarks"),
    path("runs/<int:pk>/", runs.run_detail, name="run_detail"),
    path("runs/<int:pk>/results/", runs.run_results, name="run_results"),
    path("runs/<int:pk>/leaderboard.<str:fmt>", runs.run_export, name="run_export"),
    path("runs/<int:pk>/threshold.json", runs.run_threshold, name="run_threshold"),
    path("runs/<int:pk>/report.<str:fmt>", runs.run_report, name="run_report"),
    path("runs/<int:pk>/charts/<str:name>", runs.run_chart, name="run_chart"),
    path("runs/<int:pk>/gallery/", gallery.run_gallery, name="run_gallery"),
    path("runs/<int:pk>/pairs/<int:pair_pk>/", gallery.pair_detail, name="pair_detail"),
    path("runs/<int:pk>/status/", runs.run_status, name="run_status"),
    path("runs/status/", dashboard.runs_status, name="runs_status"),
    path("runs/<int:pk>/cancel/", runs.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/retry/", runs.run_retry, name="run_retry"),
    path("runs/<int:pk>/clone/", runs.run_clone, name="run_clone"),
    path("models/", onnx_models.model_list, name="model_list"),
    path("models/<int:pk>/delete/", onnx_models.model_delete, name="model_delete"),
    path("training/", training.training_list, name="training_list"),
    path("training/<int:pk>/", training.training_detail, name="training_detail"),
    path("training/<int:pk>/status/", training.training_status, name="training_status"),
    path("training/<int:pk>/cancel/", training.training_cancel, name="training_cancel"),
    path("media/<path:key>", media.media, name="media"),
    path("datasets/<int:pk>/delete/", delete_pages.dataset_delete, name="dataset_delete"),
    path("experiments/<int:pk>/delete/", delete_pages.experiment_delete, name="experiment_delete"),
    path("runs/<int:pk>/delete/", delete_pages.run_delete, name="run_delete"),
    path("checkpoints/<int:pk>/delete/", delete_pages.checkpoint_delete, name="checkpoint_delete"),
]
