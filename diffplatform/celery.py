"""The Celery app. Queues: `gpu` for learned detectors, `cpu` for classical work and alignment."""

import os

from celery import Celery
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "diffplatform.settings.local")

app = Celery("diffplatform")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(Queue(name, Exchange(name), routing_key=name) for name in ("cpu", "gpu"))
app.autodiscover_tasks(
    [
        "experiments.runs",
        "experiments.training",
        "experiments.onnx_models",
        "experiments.notifications",
        "experiments.datasets",
    ]
)
