"""Who owns what a management command creates."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import CommandError


def owner_for(username: str = ""):
    name = username or settings.DEMO_USERNAME
    user = get_user_model().objects.filter(username=name).first()
    if user is None:
        hint = "create it with: python manage.py ensure_demo_user" if not username else "create the account first"
        raise CommandError(f"No user {name!r}; {hint}, or pass --user.")
    return user


def add_user_argument(parser) -> None:
    parser.add_argument("--user", default="", help=f"owner (default: the demo account {settings.DEMO_USERNAME!r})")


def dataset_for(ref: str, username: str = ""):
    """The dataset named `ref` or with id `ref` (of `username` when given); exactly one, or CommandError."""
    from experiments.models import Dataset

    datasets = Dataset.objects.all()
    if username:
        datasets = datasets.filter(owner=get_user_model().objects.filter(username=username).first())
    found = datasets.filter(pk=int(ref)) if ref.isdigit() else datasets.filter(name=ref)
    if found.count() != 1:
        raise CommandError(f"Dataset {ref!r}: {found.count()} matches; give --user or the dataset id.")
    return found.get()
