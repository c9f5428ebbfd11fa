"""Pydantic validation errors to one clear message that names the field, never the input."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from diabetes_service.http import HTTPError

_UNION_TAGS = {"list", "dict"}

_JSON_KINDS = {str: "a string", bool: "a boolean", type(None): "null", list: "a list", dict: "an object"}


def _field(loc: tuple[Any, ...]) -> str | None:
    parts: list[str] = []
    for step in loc:
        if step in _UNION_TAGS:
            continue
        if isinstance(step, int):
            parts.append(f"[{step}]")
        else:
            parts.append(f".{step}" if parts else str(step))
    return "".join(parts) or None


def _kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), "not a number")


def _message(error: dict[str, Any]) -> str:
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


def http_error(exc: ValidationError) -> HTTPError:
    """The first problem of `exc` as a 400 (unreadable JSON) or 422 (readable but invalid)."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        detail = str(error.get("ctx", {}).get("error", "")) or "not valid JSON"
        return HTTPError(400, f"malformed JSON: {detail}")
    field = _field(tuple(error["loc"]))
    message = _message(error)
    return HTTPError(422, f"{field}: {message}" if field else message, field=field)
