"""The scoring app driven in-process through its ASGI interface, on one event loop of its own (the
app's runner keeps loop-bound state between requests), one request and its whole answer at a time;
`Adapter` puts it behind `requests`, for the client."""

from __future__ import annotations

import asyncio
import io
import json
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers


class InProcess:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()

    def close(self) -> None:
        self.loop.close()

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, parsed JSON answer) of one request; `body` is sent as JSON unless it is bytes."""
        raw = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        given = {"content-type": "application/json", **(headers or {})}
        status, answer = self.loop.run_until_complete(self._run(method, path, raw, given))
        return status, json.loads(answer) if answer else None

    async def _run(self, method: str, path: str, raw: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        status, _headers, body = await self.exchange(method, path, raw, headers)
        return status, body

    async def exchange(
        self, method: str, path: str, raw: bytes, headers: dict[str, str], query: bytes = b""
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """(status, headers, body) of one request, as the app sent them."""
        sent: list[dict] = []
        delivered = False

        async def receive() -> dict:
            nonlocal delivered
            if delivered:  # nothing more to read: a client that waits for the answer
                await asyncio.sleep(3600)
            delivered = True
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "method": method,
            "path": path,
            "query_string": query,
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1),
        }
        await self.app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        answer = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start.get("headers", [])]
        return start["status"], answer, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


class Adapter(BaseAdapter):
    """A `requests` transport adapter that sends each request to the app in process: the typed client
    (client/diabetes_client) mounted on it talks to the app with no server, so the fast tier tests
    its rows, errors and answers end to end (tests/client/test_in_process.py)."""

    def __init__(self, driver: InProcess) -> None:
        super().__init__()
        self.driver = driver
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent.append(request)
        url = urlsplit(request.url or "")
        raw = request.body if isinstance(request.body, bytes) else (request.body or "").encode()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        run = self.driver.exchange(request.method or "GET", url.path or "/", raw, headers, url.query.encode())
        status, answer, body = self.driver.loop.run_until_complete(run)
        response = requests.Response()
        response.status_code = status
        response.headers = CaseInsensitiveDict()
        for name, value in answer:  # a repeated header joined as HTTP allows
            response.headers[name] = f"{response.headers[name]}, {value}" if name in response.headers else value
        response.raw = io.BytesIO(body)
        response.url = request.url or ""
        response.request = request
        response.reason = HTTPStatus(status).phrase
        response.encoding = get_encoding_from_headers(response.headers)
        return response

    def close(self) -> None:
        pass
