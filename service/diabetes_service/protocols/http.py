"""The few HTTP primitives the service needs on top of raw ASGI.

The scoring route is the hot path: a framework's request/response objects, routing and
middleware stack cost more per call than the model's arithmetic, so the service speaks ASGI
directly through these small types.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from diabetes_service.scoring.errors import RETRY_AFTER_SECONDS

if TYPE_CHECKING:
    from diabetes_service.scoring.core import ModelIdentity

Headers = list[tuple[bytes, bytes]]
# On every 503 (not ready, draining, too many in flight): when to try again.
RETRY_AFTER: Headers = [(b"retry-after", b"%d" % RETRY_AFTER_SECONDS)]


class HTTPError(Exception):
    """Answer with `status` and a JSON error body; `field` locates the problem in the request."""

    def __init__(self, status: int, message: str, field: str | None = None, headers: Headers | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = headers or []


@dataclass(slots=True)
class Request:
    method: str
    path: str
    headers: dict[bytes, bytes]
    request_id: str
    body: bytes = b""
    params: dict[str, str] | None = None  # the route's path parameters

    def header(self, name: bytes) -> bytes | None:
        return self.headers.get(name)

    @property
    def media_type(self) -> str:
        raw = self.headers.get(b"content-type", b"")
        if raw == b"application/json":  # what nearly every client sends
            return "application/json"
        return raw.decode("latin-1").split(";", 1)[0].strip().lower()


@dataclass(slots=True)
class Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: Headers | tuple[()] = ()
    # What the handler scored, for the metrics and the access log, and the model that answered
    # (one version swaps in for another between requests).
    rows: int = 0
    method: str | None = None
    model: ModelIdentity | None = None


def _numpy_fallback(value: object) -> object:
    # orjson serialises C-contiguous numeric arrays natively; anything else (a transposed
    # predict_proba, string class labels) goes through tolist().
    tolist = getattr(value, "tolist", None)
    if tolist is None:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
    return tolist()


def encode_json(payload: object) -> bytes:
    return orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY, default=_numpy_fallback)


def json_response(payload: object, status: int = 200) -> Response:
    return Response(status, encode_json(payload))


def text_response(text: str, status: int = 200, content_type: bytes = b"text/plain; charset=utf-8") -> Response:
    return Response(status, text.encode(), content_type)


Receive = Callable[[], Awaitable[dict]]


async def read_body(receive: Receive, declared_length: bytes | None, limit: int) -> bytes:
    """The whole request body, refusing with 413 as soon as it is known to exceed `limit`."""
    if declared_length is not None:
        try:
            if int(declared_length) > limit:
                raise HTTPError(413, f"request body is over the limit of {limit} bytes")
        except ValueError:
            raise HTTPError(400, "Content-Length header is not a number") from None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HTTPError(400, "client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HTTPError(413, f"request body is over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
