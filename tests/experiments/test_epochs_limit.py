"""The epochs a training job may ask for: one range (`inference.training_config.EPOCHS_RANGE`) that the
service, the page's form and the API's serializer all apply."""

import pytest

from experiments.api.serializers.training import TrainingInput
from experiments.errors import ServiceError
from experiments.pages.forms import TrainingForm
from experiments.training import services as training_services
from inference.training_config import EPOCHS_RANGE
from tests.factories import make_dataset

LOWEST, HIGHEST = EPOCHS_RANGE
OUTSIDE = (LOWEST - 1, HIGHEST + 1)


@pytest.mark.parametrize("epochs", OUTSIDE)
def test_the_service_refuses_epochs_outside_the_range(user, make_pair_bytes, epochs):
    dataset = make_dataset(user, pairs=[(f"p{i}", *make_pair_bytes(seed=i)) for i in range(2)])
    with pytest.raises(ServiceError) as raised:
        training_services.training_start(owner=user, detector="siamese-unet", dataset=dataset, epochs=epochs)
    assert raised.value.field == "epochs"
    assert f"between {LOWEST} and {HIGHEST}" in str(raised.value)
    assert not dataset.training_jobs.exists()


@pytest.mark.parametrize(("epochs", "accepted"), [(LOWEST, True), (HIGHEST, True), *((e, False) for e in OUTSIDE)])
def test_the_form_and_the_serializer_apply_the_same_range(epochs, accepted):
    form = TrainingForm(data={"epochs": epochs})
    serializer = TrainingInput(data={"detector": "siamese-unet", "dataset": 1, "epochs": epochs})
    serializer.is_valid()
    assert ("epochs" not in form.errors) is accepted
    assert ("epochs" not in serializer.errors) is accepted
