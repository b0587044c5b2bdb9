"""Small formatting helpers for the pages."""

import json

from django import template

from inference.numbers import finite_or_none

register = template.Library()

DASH = "—"


def _number(value):
    return isinstance(value, int | float) and finite_or_none(value) is not None


@register.filter
def num(value, digits=3):
    """A number with `digits` decimals, or a dash for missing values."""
    if not _number(value):
        return DASH
    return f"{value:.{int(digits)}f}"


@register.filter
def signed(value, digits=3):
    if not _number(value):
        return DASH
    return f"{value:+.{int(digits)}f}"


@register.filter
def ci(interval, digits=3):
    """`[low, high]` as text, or empty when there is no interval."""
    if not interval or len(interval) != 2 or not all(_number(v) for v in interval):
        return ""
    low, high = interval
    return f"[{low:.{int(digits)}f}, {high:.{int(digits)}f}]"


@register.filter
def count(value):
    """Large integers with thin grouping (12 345 678)."""
    if not _number(value):
        return DASH
    return f"{int(value):,}".replace(",", " ")


@register.filter
def get(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def short_weights(value):
    """Weights provenance, shortened: `checkpoint:<sha256>` -> `checkpoint 1a2b3c4d5e6f`."""
    text = str(value or "")
    if text.startswith("checkpoint:"):
        return f"checkpoint {text.split(':', 1)[1][:12]}"
    return {"none": "none (classical)", "random": "untrained (random init)"}.get(text, text or DASH)


@register.filter
def pretty_json(value):
    return json.dumps(value, indent=2, sort_keys=True, default=str)


@register.filter
def is_mapping(value):
    return isinstance(value, dict)
