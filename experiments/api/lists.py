"""Lists of experiments and runs narrowed by search and filters (the same `ListFilters` as the pages).

The API takes what its schema declares and nothing looser (the pages are more forgiving): `state` is
known states separated by commas, the `created_*` bounds are RFC 3339 dates or date-times with an
offset. Anything else answers 400, as a request that breaks the schema does.
"""

import re
from datetime import date, datetime

from drf_spectacular.utils import OpenApiParameter, extend_schema

from experiments.api import serializers as s
from experiments.api.base import PAGE_PARAMETERS, ApiView, paged
from experiments.api.errors import ApiError, error_responses
from experiments.runs import selectors as run_selectors

ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": 2**63 - 1}
_STATE = "|".join(run_selectors.LIST_STATES)
STATE_PATTERN = rf"^(({_STATE})(,({_STATE}))*)?$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
DATE_TIME_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
MOMENT_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date", "pattern": DATE_PATTERN},
        {"type": "string", "format": "date-time", "pattern": DATE_TIME_PATTERN},
    ]
}
_DATE = "an RFC 3339 date (`2026-03-31`) or date-time with an offset (`2026-03-31T08:00:00Z`)"
LIST_PARAMETERS = [
    OpenApiParameter("search", str, description="part of the experiment's or the dataset's name (runs: or a run id)"),
    OpenApiParameter(
        "state",
        {"type": "string", "pattern": STATE_PATTERN},
        description=f"one or more (comma-separated, no spaces) of {', '.join(run_selectors.LIST_STATES)}; "
        "for experiments: their newest run's state; empty: any",
    ),
    OpenApiParameter("dataset", ID_SCHEMA, description="a dataset id"),
    OpenApiParameter("detector", str, description="a detector's registry name, matched exactly"),
    OpenApiParameter("created_after", MOMENT_SCHEMA, description=f"{_DATE}: created at or after it"),
    OpenApiParameter(
        "created_before", MOMENT_SCHEMA, description=f"{_DATE}: created before it (a date: up to its end)"
    ),
]


def _rfc3339(value: str) -> str | None:
    """`value` as Django's parsers read it when it is an RFC 3339 date or date-time; else None."""
    if re.fullmatch(DATE_PATTERN, value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            return None
    if not re.fullmatch(DATE_TIME_PATTERN, value):
        return None
    text = value.upper()
    if text[17:19] == "60":  # a leap second (RFC 3339 allows it; Python does not): its second's start
        text = text[:17] + "59" + text[19:]
    try:
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return text


def _as_declared(query):
    """The query with `state` and the `created_*` bounds checked against the schema (400 otherwise)."""
    query = query.copy()
    for value in query.getlist("state"):
        if not re.fullmatch(STATE_PATTERN, value):
            raise ApiError(
                f"state is one or more of {', '.join(run_selectors.LIST_STATES)}, separated by commas; "
                f"got {value[:40]!r}.",
                field="state",
            )
    for name in ("created_after", "created_before"):
        values = query.getlist(name)
        checked = [_rfc3339(value) for value in values]
        if None in checked:
            bad = values[checked.index(None)]
            raise ApiError(
                f"{name} must be an RFC 3339 date (2026-03-31) or date-time with an offset "
                f"(2026-03-31T08:00:00Z); got {bad[:40]!r}.",
                field=name,
            )
        if values:
            query.setlist(name, checked)
    return query


def list_filters(request) -> run_selectors.ListFilters:
    try:
        return run_selectors.ListFilters.from_query(_as_declared(request.query_params))
    except ValueError as exc:
        raise ApiError(str(exc)) from None


class RunListView(ApiView):
    @extend_schema(
        tags=["runs"],
        operation_id="runs_list",
        summary="List your runs",
        description="Newest first; runs behind batch jobs are left out. Filters combine (all must hold).",
        parameters=[
            *LIST_PARAMETERS,
            OpenApiParameter("experiment", ID_SCHEMA, description="an experiment id"),
            *PAGE_PARAMETERS,
        ],
        responses={200: paged(s.RunOutput), **error_responses(400, 404)},
    )
    def get(self, request):
        runs = run_selectors.filter_runs(run_selectors.listed_runs(request.user), list_filters(request))
        return self.paginate(runs, s.RunOutput, "-created_at")
