"""The training and uploaded-model tasks share their retry options without importing the run engine."""

import os
import subprocess
import sys
from pathlib import Path

from experiments.onnx_models.tasks import validate_model
from experiments.runs.tasks import run_detector
from experiments.task_options import RETRY_POLICY, TRANSIENT_ERRORS
from experiments.training.tasks import train_detector_job

ROOT = Path(__file__).resolve().parents[2]


def test_every_retrying_task_retries_the_same_transient_errors_the_same_way():
    for task in (run_detector, train_detector_job, validate_model):
        assert task.acks_late is True
        assert tuple(task.autoretry_for) == TRANSIENT_ERRORS
        assert task.max_retries == RETRY_POLICY["max_retries"]


def test_importing_the_training_and_model_tasks_leaves_the_run_engine_out():
    script = (
        "import django, sys; django.setup(); "
        "import experiments.onnx_models.tasks, experiments.training.tasks; "
        "print(sorted(m for m in ('experiments.runs.engine', 'experiments.runs.tasks') if m in sys.modules))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "diffplatform.settings.test"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
