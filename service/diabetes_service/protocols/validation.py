"""Pydantic validation errors to HTTP errors, in the wording shared with the client."""

from __future__ import annotations

from pydantic import ValidationError

from diabetes_client.schema_errors import describe
from diabetes_service.protocols.http import HTTPError


def http_error(exc: ValidationError) -> HTTPError:
    """The first problem of `exc` as a 400 (unreadable JSON) or 422 (readable but invalid)."""
    error = exc.errors(include_url=False)[0]
    if error["type"] == "json_invalid":
        detail = str(error.get("ctx", {}).get("error", "")) or "not valid JSON"
        return HTTPError(400, f"malformed JSON: {detail}")
    field, message = describe(exc)
    return HTTPError(422, message, field=field)
