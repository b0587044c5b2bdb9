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
    call_command("make_benchmark", "--pairs", "40", "--size", "48", "--seed", "0",
                 "--fingerprints", str(tmp_path / "siamese-unet.trained_on.json"), stdout=io.StringIO(),
                 stderr=io.StringIO())  # fmt: skip
    monkeypatch.setattr(setup_demo, "WEIGHTS_DIR", tmp_path)
    return tmp_path


@pytest.mark.django_db
def test_setup_demo_registers_shipped_weights_for_everyone_and_a_dataset(user, other_user, shipped_weights):
    out = io.StringIO()
    call_command("setup_demo", "--user", user.username, "--pairs", "40", "--size", "48", stdout=out,
                 stderr=io.StringIO())  # fmt: skip
    checkpoint = ModelCheckpoint.objects.get()
    assert checkpoint.is_public and checkpoint.owner is None and checkpoint.epochs == 3
    assert checkpoint_selectors.newest_checkpoint(other_user, "siamese-unet") == checkpoint
    demo = Dataset.objects.get(owner=user, name="synthetic-demo")
    assert demo.pairs.count() == 8 and set(demo.pairs.values_list("split", flat=True)) == {"test"}
    trained = set(checkpoint.config["trained_on"]["train"]) | set(checkpoint.config["trained_on"]["val"])
    assert len(trained) == 32 and not trained & {pair.fingerprint for pair in demo.pairs.all()}
    assert "No trained weights for siamese-resnet50" in out.getvalue()


@pytest.mark.django_db
def test_setup_demo_is_idempotent(user, shipped_weights):
    for _ in range(2):
        call_command("setup_demo", "--user", user.username, "--pairs", "40", "--size", "48", stdout=io.StringIO(),
                     stderr=io.StringIO())  # fmt: skip
    assert ModelCheckpoint.objects.count() == 1
    assert Dataset.objects.filter(name="synthetic-demo").count() == 1


def test_the_shipped_manifests_name_the_pairs_the_shipped_checkpoints_trained_on():
    """Regenerates a sample of the training benchmark and finds each pair in the right list."""
    import hashlib
    import json

    from experiments.datasets.benchmark import synthetic_pairs
    from experiments.models import pair_fingerprint

    for path in sorted(setup_demo.WEIGHTS_DIR.glob("*.trained_on.json")):
        record = json.loads(path.read_text())
        spec = record["benchmark"]
        assert (spec["pairs"], spec["size"], spec["seed"]) == (480, 128, 0) and len(record["train"]) == 336
        for index, pair in enumerate(synthetic_pairs(pairs=48, size=128, seed=0)):
            fingerprint = pair_fingerprint(
                hashlib.sha256(pair.a_bytes).hexdigest(), hashlib.sha256(pair.b_bytes).hexdigest()
            )
            in_training = fingerprint in set(record["train"]) | set(record["val"])
            assert in_training == (pair.split in ("train", "val")), (path.name, index, pair.split)
