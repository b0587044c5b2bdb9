"""Reads of uploaded prediction sets: the owner's, and each as a detector entry for its dataset."""

from experiments.models import PredictionSet
from inference.catalogue import CatalogueEntry


def prediction_sets_of(owner):
    if not getattr(owner, "is_authenticated", False):
        return PredictionSet.objects.none()
    return PredictionSet.objects.filter(owner=owner).select_related("dataset")


def prediction_set(owner, name: str, dataset) -> PredictionSet:
    """`external:<name>` in an experiment on `dataset`; KeyError saying why when there is none."""
    found = prediction_sets_of(owner).filter(name=name)
    if dataset is not None:
        in_dataset = found.filter(dataset=dataset).first()
        if in_dataset is not None:
            return in_dataset
        other = found.first()
        if other is not None:
            raise KeyError(
                f"predictions 'external:{name}' were uploaded for dataset {other.dataset.name!r}, "
                f"not {dataset.name!r}; upload them for this dataset to score them here"
            )
    elif found.exists():
        return found.first()
    raise KeyError(f"unknown detector 'external:{name}': no predictions called {name!r} were uploaded")


def entry_of(predictions: PredictionSet) -> CatalogueEntry:
    return CatalogueEntry(
        name=predictions.detector_name,
        family="external",
        learned=False,
        description=f"{predictions.kind} predictions uploaded for dataset {predictions.dataset.name!r} "
        "(made elsewhere: latency and memory not measured here)",
        relative_cost=None,
        input_size=None,
        params=None,
    )


def external_entry(owner, name: str, dataset=None) -> CatalogueEntry:
    return entry_of(prediction_set(owner, name, dataset))


def external_entries(owner, dataset=None) -> dict[str, CatalogueEntry]:
    sets = prediction_sets_of(owner).order_by("name")
    if dataset is not None:
        sets = sets.filter(dataset=dataset)
    return {predictions.detector_name: entry_of(predictions) for predictions in sets}


def prediction_sets_visible_to(user):
    """What the pages and the API list and show: the owner's sets (staff see all), unlike
    `prediction_sets_of`, which resolves detector names for one owner only."""
    from experiments.visibility import owned_by

    return owned_by(PredictionSet.objects.select_related("dataset"), user, "owner")
