"""Celery task of uploaded models: validate one by id (on a `cpu` worker), retrying transient failures."""

from celery import shared_task

from experiments import outbox
from experiments.onnx_models import services
from experiments.task_options import TASK_OPTIONS


@shared_task(name=outbox.TASK_VALIDATE_MODEL, **TASK_OPTIONS)
def validate_model(self, model_id: int) -> None:
    services.model_validate(model_id=model_id)
