"""Reads of model checkpoints: a user sees their own and the public (shipped) ones."""

from django.db.models import Q, QuerySet

from experiments.models import ModelCheckpoint


def checkpoints_visible_to(user) -> QuerySet:
    if not user.is_authenticated:
        return ModelCheckpoint.objects.none()
    if user.is_staff:
        return ModelCheckpoint.objects.all()
    return ModelCheckpoint.objects.filter(Q(owner=user) | Q(is_public=True))


def newest_checkpoint(user, detector: str) -> ModelCheckpoint | None:
    """The weights `auto` picks for `user`: their own newest checkpoint, else a public one."""
    own = ModelCheckpoint.objects.filter(detector=detector, owner=user).first() if user else None
    return own or ModelCheckpoint.objects.filter(detector=detector, is_public=True).first()
