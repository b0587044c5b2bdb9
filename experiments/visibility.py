"""Who may see what: the one rule every selector applies (owners see their own, staff see all)."""

from django.db.models import QuerySet


def owned_by(queryset: QuerySet, user, owner_path: str, *, staff_sees_all: bool = True) -> QuerySet:
    """What `user` may see of `queryset`; `staff_sees_all=False` for lists of the user's own things
    ("your batch jobs"), which staff see as any owner does."""
    if not user.is_authenticated:
        return queryset.none()
    if user.is_staff and staff_sees_all:
        return queryset
    return queryset.filter(**{owner_path: user})
