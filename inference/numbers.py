"""Numbers for records and JSON: NaN and infinity become None (JSON has no NaN; a missing value is honest)."""

import math


def finite_or_none(value) -> float | int | None:
    """`value` as a number when it is a finite int or float (numpy scalars included), else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(number):
        return None
    return value if isinstance(value, int) else number


def json_safe(value):
    """A copy of `value` that strict JSON accepts: NaN/inf -> None, NumPy scalars -> Python numbers,
    tuples -> lists, dict keys -> strings."""
    if isinstance(value, dict):
        return {str(key): json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, float):
        return finite_or_none(value)
    return value
