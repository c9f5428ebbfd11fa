"""Single requests before the load: is the body scored, and by every worker?"""

from __future__ import annotations

import http.client
import json
import time

PROBE_TIMEOUT_SECONDS = 30
RETRY_SECONDS = 0.05


class ProbeError(RuntimeError):
    """The server does not score the benchmark's body."""


def post(port: int, path: str, body: bytes, headers: tuple[tuple[str, str], ...] = ()) -> tuple[int, bytes]:
    """POST `body` as JSON on a new connection (so any worker may take it)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT_SECONDS)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **dict(headers)})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def check_scored(label: str, status: int, payload: bytes, rows: int | None) -> None:
    """200, and when `rows` is given, one prediction per row (a bare list, MLflow's {"predictions": ...} or a
    V2 answer's first output, whose JSON may be followed by binary tensors)."""
    if status != 200:
        raise ProbeError(f"{label} answered {status}: {payload[:200]!r}")
    if rows is not None:
        doc, _ = json.JSONDecoder().raw_decode(payload.decode("latin-1"))
        if isinstance(doc, dict) and "outputs" in doc:
            count = doc["outputs"][0]["shape"][0]
        else:
            count = len(doc["predictions"] if isinstance(doc, dict) else doc)
        if count != rows:
            raise ProbeError(f"{label} answered {count} predictions to {rows} rows")


def wait_until_scoring(
    label: str,
    port: int,
    path: str,
    body: bytes,
    rows: int | None,
    *,
    consecutive: int,
    timeout: float,
    headers: tuple[tuple[str, str], ...] = (),
) -> None:
    """Until `consecutive` new connections in a row are scored: the readiness route may answer 200 from
    the first warm worker while another one still answers 503 to scoring requests."""
    deadline = time.monotonic() + timeout
    streak = 0
    while streak < consecutive:
        status, payload = post(port, path, body, headers)
        if status == 503 and time.monotonic() < deadline:
            streak = 0
            time.sleep(RETRY_SECONDS)
            continue
        check_scored(label, status, payload, rows)
        streak += 1
