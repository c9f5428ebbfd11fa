"""`/metrics` on its own port (`--metrics-port`, default 8082), with no key, served by the supervisor.

On the scoring port `/metrics` sat behind the scoring key, so every Prometheus scrape configuration
carried the primary scoring key (issue 27); MLServer serves its metrics on a port of their own for
the same reason. A port of its own is kept inside the cluster (no Service, ingress or published
port carries it) and needs no credential at all.

The workers already leave their totals in shared files (observability/metrics.py), and so does the
supervisor whenever its own counters change, so the supervisor adds those files up and answers: no
worker's event loop spends anything on a scrape, and a scrape still answers while every worker
restarts. A scrape only reads: it never writes a snapshot of its own.

The listener is a thread of the supervisor reading one request line per connection, not the
standard library's `http.server`: importing that (html, email, http.client, mimetypes) measured
20-48 ms in the supervisor before it forks its workers (5 runs, load average 10), all of it on the
way to the first answer, for a route that answers one GET. Each connection gets a thread of its
own with a deadline, so a client that sends nothing holds no other scrape. The listening socket
is closed in every process the supervisor forks, so a worker never holds the port.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import weakref

from diabetes_service.observability.metrics import Metrics

log = logging.getLogger("diabetes_service.supervisor")

SCRAPE_TIMEOUT_SECONDS = 10.0  # to send the request, and to take the answer
MAX_HEAD_BYTES = 16 * 1024
POLL_SECONDS = 0.5  # how soon the accept loop sees close()
_open: weakref.WeakSet[MetricsListener] = weakref.WeakSet()


class _Gathered(Metrics):
    """Every snapshot in the shared folder, added up; nothing of its own to save."""

    def save(self) -> None:
        pass


class MetricsListener:
    """Bound at once (a port in use fails the start, as the scoring port does); served from `start`."""

    def __init__(self, host: str, port: int) -> None:
        host = host.strip("[]")
        self._sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.listen(64)
        except BaseException:
            self._sock.close()
            raise
        self._sock.settimeout(POLL_SECONDS)
        self.port: int = self._sock.getsockname()[1]
        self._metrics: Metrics | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        _open.add(self)

    def start(self, metrics_dir: str | None) -> None:
        self._metrics = _Gathered(metrics_dir, owner="scrape")
        self._thread = threading.Thread(target=self._accept, name="metrics", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(POLL_SECONDS * 4)
            self._thread = None
        self._sock.close()
        _open.discard(self)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            threading.Thread(target=self._answer, args=(conn,), name="metrics-scrape", daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(SCRAPE_TIMEOUT_SECONDS)
            head = b""
            while b"\r\n\r\n" not in head and b"\n\n" not in head:
                chunk = conn.recv(4096)
                if not chunk or len(head) + len(chunk) > MAX_HEAD_BYTES:
                    return
                head += chunk
            method, _, rest = head.split(b"\n", 1)[0].partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if path != b"/metrics":
                status, body, content_type = b"404 Not Found", b'{"message":"this port serves /metrics only"}', None
            elif method not in (b"GET", b"HEAD"):
                status, body, content_type = b"405 Method Not Allowed", b'{"message":"use GET"}', None
            else:
                try:
                    body, content_type = self._metrics.render(), self._metrics.content_type  # type: ignore[union-attr]
                    status = b"200 OK"
                except Exception:
                    log.exception("metrics: cannot render")
                    status, body, content_type = b"500 Internal Server Error", b'{"message":"see the log"}', None
            headers = (
                b"HTTP/1.1 " + status + b"\r\n"
                b"Content-Type: " + (content_type or b"application/json") + b"\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
            )
            conn.sendall(headers if method == b"HEAD" else headers + body)


def _close_in_child() -> None:
    # A forked worker has no accept thread, only the inherited socket: let go of it.
    for listener in list(_open):
        listener._sock.close()


os.register_at_fork(after_in_child=_close_in_child)
