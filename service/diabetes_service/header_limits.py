"""uvicorn's httptools protocol plus the two limits it lacks: a deadline for a request's headers, a cap on their size.

uvicorn arms its only timer (keep-alive) once a response has gone out, and httptools buffers header
bytes without bound. So a client that opens connections and trickles header bytes (slowloris) holds
each one forever, and one that sends megabytes of headers has them all kept in memory. Here:

- headers must be complete within `header_timeout` seconds of the connection opening (or of the
  first byte of the next request on a kept-alive connection), else the answer is 408 and the
  connection is closed; the clock runs from the start, so trickling bytes does not reset it;
- a request line and headers over `max_header_bytes` get 431 (414 for the URL alone) and the
  connection is closed, without reading the rest.

Both answers carry the service's JSON error body and close the connection. Neither is logged: a
flood of them must not become a flood of log lines.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_SECONDS = 10.0
MAX_HEADER_BYTES = 32 * 1024

_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


class HeaderLimitedProtocol(HttpToolsProtocol):
    header_timeout: float = HEADER_TIMEOUT_SECONDS
    max_header_bytes: int = MAX_HEADER_BYTES

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._deadline: asyncio.TimerHandle | None = None
        self._in_headers = False
        self._header_bytes = 0  # request line and headers, as the parser hands them over
        self._streamed_bytes = 0  # whole chunks received while one header section stays incomplete
        self._refused = False  # answered 408/414/431: the connection is closing, the rest is ignored

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # A section under way before this chunk and still incomplete after it holds all of it. A
        # section that begins inside the chunk is counted by the callbacks alone, so what is
        # buffered stays under the cap plus one read, and no body byte is ever counted.
        counting = self._in_headers
        super().data_received(data)
        if counting and self._in_headers and not self._refused:
            self._streamed_bytes += len(data)
            if self._streamed_bytes > self.max_header_bytes:
                self._refuse(431, f"request headers over {self.max_header_bytes} bytes")

    # Parser callbacks: once refused, the rest of the chunk is parsed but nothing acts on it.
    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        if not self._in_headers:  # the next request on a kept-alive connection
            self._start_headers()

    def on_url(self, url: bytes) -> None:
        if not self._refused:
            super().on_url(url)
            self._count(url, 414, f"URL over {self.max_header_bytes} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._refused:
            super().on_header(name, value)
            self._count(name + value, 431, f"request headers over {self.max_header_bytes} bytes")

    def on_headers_complete(self) -> None:
        if not self._refused:
            self._in_headers = False
            self._cancel_deadline()
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    # Helpers.
    def _start_headers(self) -> None:
        self._in_headers = True
        self._header_bytes = self._streamed_bytes = 0
        self._cancel_deadline()
        self._deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _count(self, part: bytes, status: int, message: str) -> None:
        self._header_bytes += len(part)
        if self._header_bytes > self.max_header_bytes:
            self._refuse(status, message)

    def _headers_too_slow(self) -> None:
        self._deadline = None
        if self._in_headers and not self._refused:
            self._refuse(408, f"request headers not complete within {self.header_timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._in_headers = False
        self._cancel_deadline()
        body = orjson.dumps({"message": message, "field": None})
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, _REASONS[status], len(body)) + body)
        self.transport.close()
