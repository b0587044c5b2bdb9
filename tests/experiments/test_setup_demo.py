import io

import pytest
import torch
from django.core.management import call_command

from experiments.checkpoints import selectors as checkpoint_selectors
from experiments.management.commands import setup_demo
from experiments.models import Dataset, ModelCheckpoint
from inference import create_detector
from inference.weights import save_checkpoint


@pytest.fixture
def shipped_weights(tmp_path, monkeypatch):
    torch.manual_seed(0)
    detector = create_detector("siamese-unet", weights=None, device="cpu", input_size=64)
    save_checkpoint(tmp_path / "siamese-unet.pt", detector.model.state_dict(),
                    {"detector": "siamese-unet", "epochs_run": 3, "val_metrics": {"f1": 0.5}, "input_size": 64})  # fmt: skip
    monkeypatch.setattr(setup_demo, "WEIGHTS_DIR", tmp_path)
    return tmp_path


@pytest.mark.django_db
def test_setup_demo_registers_shipped_weights_for_everyone_and_a_dataset(user, other_user, shipped_weights):
    out = io.StringIO()
    call_command("setup_demo", "--user", user.username, "--pairs", "8", "--size", "48", stdout=out,
                 stderr=io.StringIO())  # fmt: skip
    checkpoint = ModelCheckpoint.objects.get()
    assert checkpoint.is_public and checkpoint.owner is None and checkpoint.epochs == 3
    assert checkpoint_selectors.newest_checkpoint(other_user, "siamese-unet") == checkpoint
    assert Dataset.objects.get(owner=user, name="synthetic-demo").pairs.count() == 8
    assert "No trained weights for siamese-resnet50" in out.getvalue()


@pytest.mark.django_db
def test_setup_demo_is_idempotent(user, shipped_weights):
    for _ in range(2):
        call_command("setup_demo", "--user", user.username, "--pairs", "8", "--size", "48", stdout=io.StringIO(),
                     stderr=io.StringIO())  # fmt: skip
    assert ModelCheckpoint.objects.count() == 1
    assert Dataset.objects.filter(name="synthetic-demo").count() == 1
