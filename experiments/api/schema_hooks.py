"""OpenAPI schema post-processing (drf-spectacular POSTPROCESSING_HOOKS)."""

import re

BLANK_STRING = {"type": "string", "maxLength": 0}


def _admits_blank(schema: dict) -> bool:
    if schema.get("type") != "string" or schema.get("minLength", 0) > 0 or "enum" in schema:
        return False
    pattern = schema.get("pattern")
    return pattern is None or re.search(pattern, "") is not None


def _collapse(node):
    if isinstance(node, list):
        return [_collapse(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _collapse(value) for key, value in node.items()}
    alternatives = node.get("oneOf")
    # drf-spectacular writes a blank-allowed CharField as oneOf[string, blank string]. When the
    # first branch already admits "" the blank string matches both branches, which oneOf forbids:
    # the schema then calls a blank value invalid although the API takes it. One branch says it.
    if (
        isinstance(alternatives, list)
        and len(alternatives) == 2
        and alternatives[1] == BLANK_STRING
        and _admits_blank(alternatives[0])
    ):
        rest = {key: value for key, value in node.items() if key != "oneOf"}
        return {**alternatives[0], **rest}
    return node


def collapse_blank_alternatives(result, generator, request, public):
    return _collapse(result)


def _refs(node):
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"].rsplit("/", 1)[-1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def forbid_unknown_request_fields(result, generator, request, public):
    """`additionalProperties: false` on every object a request body reads (nested ones too): the API
    refuses fields it does not declare with 400 (`experiments.api.strict`)."""
    components = result.get("components", {}).get("schemas", {})
    bodies = [op.get("requestBody", {}) for ops in result.get("paths", {}).values() for op in ops.values()
              if isinstance(op, dict)]  # fmt: skip
    pending, seen = list(_refs(bodies)), set()
    while pending:
        name = pending.pop()
        if name in seen or name not in components:
            continue
        seen.add(name)
        component = components[name]
        if component.get("type") == "object" and "properties" in component:
            component.setdefault("additionalProperties", False)
        pending.extend(_refs(component))
    return result
