"""The scoring app driven in-process through its ASGI interface, on one event loop of its own (the
app's runner keeps loop-bound state between requests), one request and its whole answer at a time."""

from __future__ import annotations

import asyncio
import json
from typing import Any


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
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 1),
        }
        await self.app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
