"""uvicorn's httptools protocol plus the two limits it lacks: a deadline for a request's headers, a cap on their size.

uvicorn arms its only timer (keep-alive) once a response has gone out, and httptools buffers header
bytes without bound. So a client that opens connections and trickles header bytes (slowloris) holds
each one forever, and one that sends megabytes of headers has them all kept in memory. Here:

- headers must be complete within `header_timeout` seconds of the connection opening (or of the
  first byte of the next request on a kept-alive connection), else the answer is 408 and the
  connection is closed; the clock runs from the start, so trickling bytes does not reset it;
- a request line and headers over `max_header_bytes` get 431 (414 for the URL alone) and the
  connection is closed; what is kept meanwhile stays under the cap plus one read.

Both answers carry the service's JSON error body and close the connection. Neither is logged: a
flood of them must not become a flood of log lines.

Both are kept off the per-request path. Measured in CPU time, feeding one scoring request's bytes
through the protocol: uvicorn's own ~11 µs; a first version that armed and cancelled a timer per
request and counted every header in a callback, ~11 µs more; this one ~1.3 µs more. The deadline is
one clock read per request and one sweep per worker, every `SWEEP_SECONDS` while it has
connections; only a request whose bytes since its section began exceed `max_header_bytes` is
measured header by header.
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEADER_TIMEOUT_SECONDS = 10.0
MAX_HEADER_BYTES = 32 * 1024
SWEEP_SECONDS = 0.25  # how late past its deadline a slow connection may be closed, at most

_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


class HeaderLimitedProtocol(HttpToolsProtocol):
    header_timeout: float = HEADER_TIMEOUT_SECONDS
    max_header_bytes: int = MAX_HEADER_BYTES

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._headers_since: float | None = None  # loop time a header section began; None: none under way
        self._streamed_bytes = 0  # bytes received in earlier chunks while this header section went on
        self._chunk_bytes = 0  # the chunk being parsed
        self._refused = False  # answered 408/414/431: the connection is closing, the rest is ignored

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_headers()
        _Sweep.ensure(self)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        # What the parser buffers of an incomplete section stays under the cap plus one read.
        under_way = self._headers_since is not None
        self._chunk_bytes = len(data)
        super().data_received(data)
        if under_way and self._headers_since is not None and not self._refused:
            self._streamed_bytes += len(data)
            if self._streamed_bytes > self.max_header_bytes:
                self._refuse(431, f"request line and headers over {self.max_header_bytes} bytes")

    # Parser callbacks: once refused, the rest of the chunk is parsed but nothing acts on it.
    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        if self._headers_since is None:  # the next request on a kept-alive connection
            self._start_headers()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._headers_since = None
        # The section is no larger than what arrived since it began: only a large one is measured.
        if self._streamed_bytes + self._chunk_bytes > self.max_header_bytes:
            if len(self.url) > self.max_header_bytes:
                self._refuse(414, f"URL over {self.max_header_bytes} bytes")
                return
            size = len(self.url) + sum(len(name) + len(value) for name, value in self.headers)
            if size > self.max_header_bytes:
                self._refuse(431, f"request line and headers over {self.max_header_bytes} bytes")
                return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    # Helpers.
    def _start_headers(self) -> None:
        self._headers_since = self.loop.time()
        self._streamed_bytes = 0

    def _past_deadline(self, now: float) -> bool:
        return self._headers_since is not None and now - self._headers_since > self.header_timeout

    def _refuse(self, status: int, message: str) -> None:
        self._refused = True
        self._headers_since = None
        body = orjson.dumps({"message": message, "field": None})
        head = b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
        self.transport.write(head % (status, _REASONS[status], len(body)) + body)
        self.transport.close()


class _Sweep:
    """Every SWEEP_SECONDS while the worker has connections: close those past their header deadline."""

    def __init__(self, protocol: HeaderLimitedProtocol) -> None:
        self.loop = protocol.loop
        self.state = protocol.server_state  # shared by the server's connections: the sweep is kept there
        self.connections = protocol.connections  # the server's set of live protocols
        self.handle = self.loop.call_later(SWEEP_SECONDS, self.run)

    @classmethod
    def ensure(cls, protocol: HeaderLimitedProtocol) -> None:
        """Start the server's sweep unless it runs (connection_made is the only caller)."""
        if getattr(protocol.server_state, "_header_sweep", None) is None:
            protocol.server_state._header_sweep = cls(protocol)  # type: ignore[attr-defined]

    def run(self) -> None:
        now = self.loop.time()
        for protocol in list(self.connections):
            if isinstance(protocol, HeaderLimitedProtocol) and not protocol._refused and protocol._past_deadline(now):
                protocol._refuse(408, f"request headers not complete within {protocol.header_timeout:g} s")
        if self.connections:
            self.handle = self.loop.call_later(SWEEP_SECONDS, self.run)
        else:
            self.state._header_sweep = None  # type: ignore[attr-defined]
