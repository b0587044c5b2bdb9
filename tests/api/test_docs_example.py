"""The Python client in docs/api.md, executed as written against a live daphne and Celery worker."""

import re
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

from tests.live_services import celery_worker, celery_workers, daphne_server, service_env  # noqa: F401

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def example_code() -> str:
    section = DOC.read_text().split("## A complete script", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1, "docs/api.md: the script section must hold exactly one python block"
    return blocks[0]


def test_the_documented_client_runs_end_to_end(user, make_pair_bytes, tmp_path, celery_worker, daphne_server, capsys):  # noqa: F811
    images = tmp_path / "pairs"
    images.mkdir()
    for i in range(2):
        a, b, label = make_pair_bytes(seed=i)
        (images / f"site{i}_A.png").write_bytes(a)
        (images / f"site{i}_B.png").write_bytes(b)
        (images / f"site{i}_label.png").write_bytes(label)
    token = Token.objects.create(user=user).key
    namespace = {"BASE_URL": daphne_server, "TOKEN": token, "IMAGES_DIR": str(images)}
    exec(compile(example_code(), str(DOC), "exec"), namespace)
    assert namespace["event"]["state"] == "succeeded"
    rows = namespace["leaderboard"]["rows"]
    assert {row["detector"] for row in rows} == {"absdiff", "ssim"}
    assert all(row["n_pairs"] == 2 and row["pooled_iou"] is not None for row in rows)
    printed = capsys.readouterr().out
    assert "run succeeded" in printed and "absdiff" in printed


ENGINE_DOC = DOC.parent / "engine.md"


def test_the_documented_leaderboard_check_reproduces_the_figures(user, make_pair_bytes, daphne_server, no_queue):  # noqa: F811
    """docs/engine.md's script, using only the REST API, against a run with and without change."""
    from experiments.runs import services as run_services
    from tests.factories import make_dataset, run_in_process

    pairs = [(f"p{i}", *make_pair_bytes(seed=i, box=(4 + 3 * i, 6, 20 + 2 * i, 30))) for i in range(6)]
    pairs.append(("quiet", *make_pair_bytes(seed=9, box=(0, 0, 0, 0))))  # no change: B equals A, empty label
    dataset = make_dataset(user, pairs=pairs)
    run = run_in_process(
        run_services.experiment_start(
            owner=user, dataset=dataset, name="check", detectors=["absdiff", "ssim"], threshold=0.3
        )
    )
    section = ENGINE_DOC.read_text().split("### Checking the numbers from outside", 1)[1]
    code = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)[0]
    namespace = {"BASE_URL": daphne_server, "TOKEN": Token.objects.create(user=user).key, "RUN_ID": run.pk}
    exec(compile(code, str(ENGINE_DOC), "exec"), namespace)
    checked = namespace["checked"]
    # pooled IoU, F1, mean IoU and the pooled F1 interval's ends for two detectors, the bootstrap test
    # between them and one Wilcoxon test against the baseline
    assert len(checked) == 12
    for figure, (ours, theirs) in checked.items():
        assert ours == pytest.approx(theirs, abs=1e-6), figure
