from django.urls import path

from experiments import views

app_name = "experiments"

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("datasets/", views.dataset_list, name="dataset_list"),
    path("datasets/<int:pk>/", views.dataset_detail, name="dataset_detail"),
    path("experiments/new/", views.experiment_create, name="experiment_create"),
    path("runs/<int:pk>/", views.run_detail, name="run_detail"),
    path("runs/<int:pk>/status/", views.run_status, name="run_status"),
    path("runs/status/", views.runs_status, name="runs_status"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/retry/", views.run_retry, name="run_retry"),
    path("runs/<int:pk>/clone/", views.run_clone, name="run_clone"),
    path("media/<path:key>", views.media, name="media"),
]
