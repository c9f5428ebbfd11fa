"""Oversized request heads: one huge header, many small ones, a huge URL.

Targets: 431 (414 for the URL) with the service's JSON error body, the connection closed, the same
workers running afterwards (no crash); a large but acceptable head, and a large body after small
headers, still score.
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

from diabetes_service.transport.header_limits import MAX_HEADER_BYTES
from loadtests.faults.load import score_body
from loadtests.faults.models import Models
from loadtests.faults.report import Report
from loadtests.faults.service import Service


def run(models: Models, workdir: Path) -> Report:
    report = Report("oversized headers")
    body = score_body(models.rows[:1])
    requests = {
        "one 1 MiB header": (b"/score", [(b"X-Big", b"a" * 2**20)], 431),
        f"one {2 * MAX_HEADER_BYTES // 1024} KiB header": (b"/score", [(b"X-Big", b"a" * 2 * MAX_HEADER_BYTES)], 431),
        "10,000 small headers": (b"/score", [(b"X-H%d" % i, b"v") for i in range(10_000)], 431),
        f"a {2 * MAX_HEADER_BYTES // 1024} KiB URL": (b"/score?" + b"q" * 2 * MAX_HEADER_BYTES, [], 414),
        f"a {MAX_HEADER_BYTES // 2048} KiB header (within the limit)": (
            b"/score",
            [(b"X-Ok", b"a" * (MAX_HEADER_BYTES // 2))],
            200,
        ),
    }
    # Small headers before a large body: the body is never counted as headers.
    large_body = score_body((models.rows * 100)[:6000])
    requests["small headers, a 1 MiB body (within the limits)"] = (b"/score", [], 200)
    with Service(models.fast, workdir / "oversized.log", workers=2) as svc:
        workers = svc.worker_pids()
        for name, (target, headers, expected) in requests.items():
            status, answer, closed = _send(svc.port, target, headers, large_body if "body" in name else body)
            json_body = _json_message(answer) if expected != 200 else "scored"
            report.figure(name, f"{status} {json_body}{', connection closed' if closed else ''}")
            report.check(
                f"{name}: {expected}",
                str(status),
                status == expected and (expected == 200 or (closed and json_body != "no JSON body")),
            )
        same_workers = svc.worker_pids() == workers and svc.exit_code() is None
    report.check("the same workers run afterwards (no crash)", "yes" if same_workers else "no", same_workers)
    return report


def _send(port: int, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> tuple[int | None, bytes, bool]:
    """Send one request by hand (`Connection: close`); the status, the answer's body, and whether the
    service closed the connection within 5 s."""
    head = (
        b"POST " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
    )
    head += b"Content-Length: %d\r\n" % len(body)
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    received = b""
    closed = False
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # Refused before it was all sent: the answer may be waiting all the same.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head + b"\r\n" + body)
        try:
            while chunk := sock.recv(65536):
                received += chunk
            closed = True
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            pass
    if not received.startswith(b"HTTP/1.1 "):
        return None, b"", closed
    return int(received[9:12]), received.partition(b"\r\n\r\n")[2], closed


def _json_message(answer: bytes) -> str:
    try:
        return json.loads(answer)["message"]
    except (ValueError, KeyError, TypeError):
        return "no JSON body"
