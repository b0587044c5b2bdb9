"""Who may see what: the one rule every selector applies (owners see their own, staff see all)."""

from django.db.models import QuerySet


def owned_by(queryset: QuerySet, user, owner_path: str) -> QuerySet:
    if not user.is_authenticated:
        return queryset.none()
    if user.is_staff:
        return queryset
    return queryset.filter(**{owner_path: user})
