"""Celery task of uploaded models: validate one by id (on a `cpu` worker), retrying transient failures.
A validation that kills its worker every time ends rejected with the reason (`task_leases`)."""

from celery import shared_task

from experiments import outbox
from experiments.onnx_models import services
from experiments.task_leases import leased
from experiments.task_options import TASK_OPTIONS


def _poisoned(model_id: int, *, reason: str) -> None:
    services.model_give_up(model_id=model_id, reason=f"validation failed: {reason}")


@shared_task(name=outbox.TASK_VALIDATE_MODEL, **TASK_OPTIONS)
@leased(_poisoned, lambda model_id: f"validate uploaded model {model_id}")
def validate_model(self, model_id: int) -> None:
    services.model_validate(model_id=model_id)
