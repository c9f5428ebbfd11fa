"""Wording of the wire schema's validation errors, shared by the service and the client.

One message per problem, naming the field (row and column where it applies) and never the input
itself, only its JSON kind: a caller sees the same words whichever side caught the mistake.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# The unions' tags, which pydantic puts in the location: ("data", 3, "list", 2).
_UNION_TAGS = ("list", "dict", "split", "rows", "columns")

_JSON_KINDS: dict[type, str] = {
    str: "a string",
    bool: "a boolean",
    type(None): "null",
    list: "a list",
    dict: "an object",
}


def _kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), "not a number")


def field_of(loc: tuple[int | str, ...], row_offset: int = 0) -> str | None:
    """`("data", 3, "list", 2)` to `data[3][2]`; row indices shifted by `row_offset` (a chunk's start)."""
    text = ""
    for step in loc:
        if step in _UNION_TAGS:
            continue
        if isinstance(step, int):
            text += f"[{step + row_offset if text == 'data' else step}]"
        else:
            text += f".{step}" if text else str(step)
    return text or None


def problem_of(error: Any) -> str:
    kind = error["type"]
    if kind in ("float_type", "float_parsing"):
        return f"must be a number, not {_kind(error.get('input'))}"
    if kind == "finite_number":
        return "must be a finite number (NaN and infinity are not allowed)"
    if kind == "too_short":
        return "must hold at least one row"
    if kind == "list_type":
        return f"must be a list, not {_kind(error.get('input'))}"
    if kind == "union_tag_not_found":
        return "must be a list of numbers or an object keyed by feature name"
    if kind == "dict_type":
        return f"must be an object, not {_kind(error.get('input'))}"
    if kind == "literal_error":
        return f"unknown value; use one of {error.get('ctx', {}).get('expected', '')}"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "is required"
    if kind in ("model_type", "model_attributes_type"):
        return "the body must be a JSON object with a 'data' field"
    if kind == "string_type":
        return f"must be a string, not {_kind(error.get('input'))}"
    return str(error.get("msg", "is invalid"))


def describe(exc: ValidationError, row_offset: int = 0) -> tuple[str | None, str]:
    """The first problem of `exc` as (field, message); the message starts with the field."""
    first = exc.errors(include_url=False)[0]
    field = field_of(tuple(first["loc"]), row_offset)
    message = problem_of(first)
    return field, f"{field}: {message}" if field else message
