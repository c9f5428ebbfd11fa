"""The ceiling: an ASGI app that reads the request and answers a fixed JSON list, doing no work.

Served by uvicorn with httptools and uvloop, like the scoring service, so the gap between the two
is the cost of scoring (parsing, validation, the model, headers, metrics, the access log).
"""

from __future__ import annotations

from typing import Any

REPLY = b"[235.11]"
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(REPLY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Drain the body (a real server reads it too), then send the fixed reply."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": REPLY})
