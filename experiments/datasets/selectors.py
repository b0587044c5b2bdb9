"""Reads of datasets and pairs, filtered to what the user may see."""

from django.db.models import Count, QuerySet

from experiments.models import Dataset, ImagePair
from experiments.visibility import owned_by


def datasets_visible_to(user) -> QuerySet:
    return owned_by(Dataset.objects.annotate(pair_count=Count("pairs")), user, "owner")


def datasets_listed_for(user) -> QuerySet:
    """The user's own datasets as lists show them (batch jobs' hidden datasets left out)."""
    return datasets_visible_to(user).filter(owner=user, hidden=False)


def pairs_visible_to(user) -> QuerySet:
    return owned_by(ImagePair.objects.select_related("dataset"), user, "dataset__owner")


def dataset_categories(dataset) -> list[dict]:
    """Each category of the dataset with its pair count, for the filter chips."""
    return list(dataset.pairs.values("category").annotate(n=Count("pk")).order_by("category"))


def leakage_findings(dataset) -> QuerySet:
    """The findings of the dataset's last leakage audit, with both pairs."""
    return dataset.leakage_findings.select_related("pair", "other")


def leakage_summary(dataset) -> dict:
    """The last audit's summary, with `stale` when pairs were added or removed since (an empty dict:
    never audited)."""
    summary = dict(dataset.leakage or {})
    if summary and "pairs" in summary:
        summary["stale"] = summary["pairs"] != dataset.pairs.count()
    return summary
