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
