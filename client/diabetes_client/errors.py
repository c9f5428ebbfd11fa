"""The client's exceptions: one base class, one subclass per thing a caller can act on.

Every exception carries the HTTP status (``None`` when no answer came back), the service's message
and the request id of the call, so a failure can be matched with the service's log line.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from diabetes_client.schema import ErrorBody
from diabetes_client.schema_errors import describe

# Statuses that mean "the service cannot take this now": retried, and once the retries are spent,
# raised as ServiceUnavailableError.
UNAVAILABLE_STATUSES = frozenset({429, 502, 503, 504})
# Bodies of Azure ML's own containers can be long HTML or stack-less text; keep what we show short.
_MAX_TEXT = 500


class ScoringError(Exception):
    """Base class of every error the client raises.

    Attributes:
        status: the HTTP status of the answer, or ``None`` when no answer came back (or the client
            refused the call before sending it).
        message: the service's message (or the client's, when the call never reached the service).
        request_id: the ``x-request-id`` of the call, to find it in the service's log.
        field: where in the request the problem is (``"data[3][2]"``), when the service said so.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.field = field

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status {self.status}")
        if self.request_id:
            parts.append(f"request id {self.request_id}")
        return parts[0] if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(message={self.message!r}, status={self.status!r}, "
            f"request_id={self.request_id!r}, field={self.field!r})"
        )


class AuthenticationError(ScoringError):
    """The service refused the API key (401) or the caller's rights (403)."""


class InvalidInputError(ScoringError):
    """The service (or the shared schema, before sending) refused the request: a 4xx other than 401/403.

    ``message`` is the service's own explanation, naming the row and column where it applies.
    """


class ServiceUnavailableError(ScoringError):
    """The service could not be reached or kept answering 429/502/503/504 until the retries were spent."""


class ScoringTimeout(ScoringError):
    """The service did not answer within the client's timeout (or answered 408)."""


def parse_error_body(body: bytes, content_type: str | None = None) -> ErrorBody:
    """Read an error answer's body into the shared ``ErrorBody``, whoever sent it.

    Understands this service's ``{"message": ..., "field": ...}``, Azure ML's JSON ``{"message": ...}``,
    the ``{"error": {"message": ...}}`` of Azure's front doors, FastAPI's ``{"detail": ...}``, a JSON
    string, and the plain text older Azure ML scoring images answer with.
    """
    text = body.decode("utf-8", errors="replace").strip()
    try:
        document: Any = json.loads(text) if text else None
    except ValueError:
        document = None
    else:
        message = _message_from_json(document)
        if message is not None:
            field = document.get("field") if isinstance(document, dict) else None
            return ErrorBody(message=_shorten(message), field=field if isinstance(field, str) else None)
    if not text:
        return ErrorBody(message="the service gave no reason")
    return ErrorBody(message=_shorten(" ".join(text.split())))


def _message_from_json(document: Any) -> str | None:
    if isinstance(document, str):
        return document
    if not isinstance(document, dict):
        return None
    for key in ("message", "error", "detail", "Message"):
        value = document.get(key)
        if isinstance(value, str) and value:
            return value
        if isinstance(value, dict):
            nested = _message_from_json(value)
            if nested is not None:
                return nested
        if isinstance(value, list) and value:
            # FastAPI's validation detail: [{"loc": [...], "msg": ...}, ...]
            first = value[0]
            if isinstance(first, dict) and isinstance(first.get("msg"), str):
                return str(first["msg"])
    return None


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 1] + "…"


def error_for_status(status: int, body: ErrorBody, *, request_id: str | None, row_offset: int = 0) -> ScoringError:
    """The exception for an error answer: its class from the status, its text from the body.

    ``row_offset`` is where the request's first row sits in the caller's input (chunked calls), so
    that ``field`` names the caller's row rather than the chunk's.
    """
    field = shift_field(body.field, row_offset)
    message = body.message
    if field != body.field and body.field is not None:
        message = message.replace(body.field, field or body.field, 1)
    kind: type[ScoringError]
    if status in (401, 403):
        kind = AuthenticationError
    elif status == 408:
        kind = ScoringTimeout
    elif status in UNAVAILABLE_STATUSES:
        kind = ServiceUnavailableError
    elif 400 <= status < 500:
        kind = InvalidInputError
    else:
        kind = ScoringError
    return kind(message, status=status, request_id=request_id, field=field)


def shift_field(field: str | None, row_offset: int) -> str | None:
    """``data[3][2]`` of a chunk starting at row 1000 is ``data[1003][2]`` of the caller's input."""
    if field is None or row_offset == 0 or not field.startswith("data["):
        return field
    end = field.find("]", 5)
    index = field[5:end]
    if end < 0 or not index.isdigit():
        return field
    return f"data[{int(index) + row_offset}]{field[end + 1 :]}"


def error_from_validation(exc: ValidationError, *, row_offset: int = 0) -> InvalidInputError:
    """The shared schema refused a request before it was sent: name the first offending field.

    Worded by `schema_errors`, as the service words the same problem, so a caller sees one
    message whichever side caught it.
    """
    field, message = describe(exc, row_offset)
    return InvalidInputError(message, field=field)
