"""Reads of uploaded prediction sets: the owner's, and those a run on a dataset may name (`experiments.plans`)."""

from experiments.models import PredictionSet


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


def prediction_sets_for(owner, dataset=None):
    """The owner's sets for `dataset` (every dataset's without one), by name: detectors `external:<name>`."""
    sets = prediction_sets_of(owner).order_by("name")
    return sets.filter(dataset=dataset) if dataset is not None else sets


def prediction_sets_visible_to(user):
    """What the pages and the API list and show: the owner's sets (staff see all), unlike
    `prediction_sets_of`, which resolves detector names for one owner only."""
    from experiments.visibility import owned_by

    return owned_by(PredictionSet.objects.select_related("dataset"), user, "owner")
