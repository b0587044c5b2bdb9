import json
import pytest
from tests.experiments.test_ensemble import *  # noqa

@pytest.mark.django_db
def test_show(user, unet_checkpoint, dataset_of):
    run = run_in_process(start(user, dataset_of(user), ["ensemble"]))
    rec = run.environment["detector_info"]["ensemble"]
    keep = {k: rec[k] for k in ("name", "family", "learned", "params", "weights", "weights_sha256", "device", "precision", "flops", "input_size", "members")}
    print(json.dumps(keep, indent=1))
    print("weights:", run.environment["weights"], run.environment["weights_sha256"])
    print("row members == record:", row(run, "ensemble")["members"] == rec["members"], row(run,"ensemble")["weights"])
