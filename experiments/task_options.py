"""What the platform's retrying Celery tasks share: the errors worth a retry and how they are retried.

Its own module, so that a task module (training, uploaded models) gets these without importing the
run engine that `experiments.runs.tasks` brings with it.
"""

from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

TRANSIENT_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)
RETRY_POLICY = {"max_retries": 5, "retry_backoff": True, "retry_backoff_max": 60, "retry_jitter": True}
TASK_OPTIONS = {"bind": True, "acks_late": True, "autoretry_for": TRANSIENT_ERRORS, **RETRY_POLICY}
