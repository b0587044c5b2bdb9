import io

import pytest
from django.core.management import CommandError, call_command

from experiments.models import Run, RunState
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
def test_run_experiment_refuses_an_unknown_detector(user, make_pair_bytes):
    make_dataset(user, name="cli-set", pairs=[("p", *make_pair_bytes())])
    with pytest.raises(CommandError, match="unknown detector"):
        call_command("run_experiment", "--dataset", "cli-set", "--detectors", "absdiff,nope")
    assert not Run.objects.exists()
