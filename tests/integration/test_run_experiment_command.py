import io

import pytest
from django.core.management import CommandError, call_command

from experiments.models import Experiment, Run, RunState
from tests.factories import make_dataset

pytestmark = pytest.mark.integration


def test_run_experiment_waits_for_the_worker_and_prints_the_leaderboard(user, make_pair_bytes, celery_worker):
    make_dataset(user, name="cli-set", pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)])
    out, err = io.StringIO(), io.StringIO()
    call_command("run_experiment", "--dataset", "cli-set", "--detectors", "absdiff,ssim", "--wait",
                 "--timeout", "120", stdout=out, stderr=err)  # fmt: skip
    run = Run.objects.get()
    assert run.state == RunState.SUCCEEDED
    text = out.getvalue()
    assert f"Queued run {run.pk}" in text
    rows = {line.split()[0]: line for line in text.splitlines() if line.startswith(("absdiff", "ssim"))}
    assert set(rows) == {"absdiff", "ssim"}
    pooled_iou = run.leaderboard["detectors"][0]["pooled"]["iou"]
    assert f"{pooled_iou:.3f}" in rows["absdiff"]


@pytest.mark.django_db
def test_run_experiment_on_an_empty_dataset_leaves_no_experiment(user):
    make_dataset(user, name="empty")
    with pytest.raises(CommandError, match="no image pairs"):
        call_command("run_experiment", "--dataset", "empty", "--detectors", "absdiff")
    assert not Experiment.objects.exists()


@pytest.mark.django_db
def test_run_experiment_refuses_an_unknown_detector(user, make_pair_bytes):
    make_dataset(user, name="cli-set", pairs=[("p", *make_pair_bytes())])
    with pytest.raises(CommandError, match="unknown detector"):
        call_command("run_experiment", "--dataset", "cli-set", "--detectors", "absdiff,nope")
    assert not Run.objects.exists()


@pytest.fixture
def plugin_in_every_process(service_env, gradient_plugin):
    """The plug-in listed in DIFFPLATFORM_DETECTOR_MODULES for the worker processes, loaded here too."""
    from tests.conftest import GRADIENT_PLUGIN

    service_env["DIFFPLATFORM_DETECTOR_MODULES"] = GRADIENT_PLUGIN
    return gradient_plugin


def test_a_plugin_detector_runs_end_to_end_on_a_real_worker(
    user, make_pair_bytes, plugin_in_every_process, celery_worker
):
    make_dataset(user, name="cli-set", pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(3)])
    out = io.StringIO()
    call_command("run_experiment", "--dataset", "cli-set", "--detectors", f"{plugin_in_every_process},absdiff",
                 "--wait", "--timeout", "120", stdout=out)  # fmt: skip
    run = Run.objects.get()
    assert run.state == RunState.SUCCEEDED, run.error
    assert run.results.filter(detector=plugin_in_every_process).count() == 3
    assert any(line.startswith(plugin_in_every_process) for line in out.getvalue().splitlines())
