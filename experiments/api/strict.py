"""A strict API: a request field or query parameter the schema does not declare is a 400 that names it.

DRF ignores what a serializer does not know, so `"treshold": 0.3` would run at the default 0.5 without
a word. Here what an operation takes is what its `extend_schema` declares: the input serializer (nested
serializers included) for the body, the declared parameters for the query string, and no body at all
where it says `request=None` (and for DELETE). The same declarations make the OpenAPI schema, so the
API and its schema cannot drift apart.
"""

from collections.abc import Mapping
from difflib import get_close_matches

from rest_framework import exceptions, serializers

# Known everywhere though no operation declares them: DRF's format override, and Django's CSRF
# field that a session client may send in a form.
QUERY_ALWAYS = frozenset({"format"})
FORM_ALWAYS = frozenset({"csrfmiddlewaretoken"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_REPORTED = 20  # unknown names reported per request (a body of thousands of keys gets a bounded answer)
MAX_NAME = 80  # characters of an unknown name quoted back


def _quoted(name: str) -> str:
    return repr(name if len(name) <= MAX_NAME else name[:MAX_NAME] + "...")


def unknown_message(name: str, known, *, what: str = "field") -> str:
    """`Unknown field 'treshold'. Did you mean 'threshold'?`, or the known names when none is close."""
    known = sorted(known)
    close = get_close_matches(name.lower(), known, n=1)
    if close:
        return f"Unknown {what} {_quoted(name)}. Did you mean {close[0]!r}?"
    if not known:
        return f"Unknown {what} {_quoted(name)}: this request takes no {what}s."
    return f"Unknown {what} {_quoted(name)}; known {what}s: {', '.join(known)}."


def _problems(names, known, *, also=frozenset(), path: str = "", what: str = "field", read_only=frozenset()) -> dict:
    """Messages for `names` outside `known` (the declared ones, suggested) and `also` (taken silently)."""
    problems = {}
    for name in names:
        if name in known or name in also or len(problems) >= MAX_REPORTED:
            continue
        key = f"{path}{name[:MAX_NAME]}"
        if name in read_only:
            problems[key] = [f"Field {_quoted(name)} is read-only; leave it out."]
        else:
            problems[key] = [unknown_message(str(name), known, what=what)]
    return problems


def _nested_items(field, value):
    """(path suffix, mapping) for each value a nested serializer of `field` reads, with that serializer."""
    child = field.child if isinstance(field, serializers.ListSerializer) else getattr(field, "child", None)
    if isinstance(field, serializers.Serializer):
        return field, [("", value)]
    if not isinstance(child, serializers.Serializer):
        return None, []
    if isinstance(value, list):
        return child, [(f"[{index}]", item) for index, item in enumerate(value)]
    if isinstance(value, Mapping) and isinstance(field, serializers.DictField):
        return child, [(f".{key}", item) for key, item in value.items()]
    return None, []  # a wrong type: the serializer says so


def _field_problems(fields, data, path: str = "") -> dict:
    """Unknown names in the mapping `data` read by `fields`, then in what its nested serializers read."""
    writable = {name for name, field in fields.items() if not field.read_only}
    read_only = {name for name, field in fields.items() if field.read_only}
    form = hasattr(data, "getlist")  # a form's values are text: nothing nests
    also = FORM_ALWAYS if form else frozenset()
    problems = _problems(data.keys(), writable, also=also, path=path, read_only=read_only)
    for name in sorted(writable & set(data.keys()) if not form else ()):
        serializer, items = _nested_items(fields[name], data[name])
        for suffix, item in items:
            if isinstance(item, Mapping) and len(problems) < MAX_REPORTED:
                problems.update(_field_problems(serializer.fields, item, f"{path}{name}{suffix}."))
    return problems


def fields_check(serializer) -> None:
    """400 for every name in the serializer's input (and its nested inputs) that it does not declare."""
    data = serializer.initial_data
    if isinstance(data, Mapping) or hasattr(data, "getlist"):
        problems = _field_problems(serializer.fields, data)
        if problems:
            raise serializers.ValidationError(problems)


# --------------------------------------------------------------------------- what an operation declares
_DECLARED: dict = {}


def declared(view, method: str):
    """(takes a body, known query parameters) as the handler's `extend_schema` declares them, or None
    when the handler declares nothing (OPTIONS, a method the view lacks). A handler that reads a body
    declares its `request=` (without one the schema would show no body either)."""
    key = (type(view), method)
    if key not in _DECLARED:
        handler = getattr(view, method.lower(), None)
        schema_class = getattr(handler, "kwargs", {}).get("schema")
        if schema_class is None:
            _DECLARED[key] = None
        else:
            schema = schema_class()
            schema.view, schema.method = view, method
            takes_body = method in ("POST", "PUT", "PATCH") and schema.get_request_serializer() is not None
            _DECLARED[key] = (takes_body, frozenset(_query_names(schema.get_override_parameters())))
            del schema.view
    return _DECLARED[key]


def _query_names(parameters):
    for parameter in parameters:
        location = getattr(parameter, "location", None)
        if location == "query":
            yield parameter.name
        elif location is None:  # a serializer of query parameters
            serializer = parameter() if isinstance(parameter, type) else parameter
            yield from serializer.fields


def request_check(view, request) -> None:
    """400 for query parameters the operation does not declare, and for a body sent where it takes none."""
    wanted = declared(view, request.method)
    if wanted is None:
        return
    takes_body, query = wanted
    problems = _problems(request.query_params.keys(), query, also=QUERY_ALWAYS, what="query parameter")
    if problems:
        raise serializers.ValidationError(problems)
    if request.method in WRITE_METHODS and not takes_body and _has_body(request):
        _no_body_check(request)


def _has_body(request) -> bool:
    meta = request.META
    return bool(meta.get("HTTP_TRANSFER_ENCODING")) or (meta.get("CONTENT_LENGTH") or "0").strip() not in ("", "0")


def _no_body_check(request) -> None:
    try:
        data = request.data
    except (exceptions.ParseError, exceptions.UnsupportedMediaType):
        raise serializers.ValidationError("This request takes no body; send none.") from None
    if isinstance(data, Mapping) or hasattr(data, "getlist"):
        problems = _problems(data.keys(), (), also=FORM_ALWAYS if hasattr(data, "getlist") else frozenset())
        if problems:
            raise serializers.ValidationError(problems)
    elif data:
        raise serializers.ValidationError("This request takes no body; send none.")
