"""`python -m loadtests.bench.constant_server --port P --workers N`: the ceiling, laid out as ours.

The constant-reply app runs in N forked uvicorn workers (httptools, uvloop), each accepting from its
own SO_REUSEPORT socket opened by the same `Listeners` as `diabetes serve`'s supervisor, with the same
uvicorn options as its workers. `uvicorn --workers N` would instead share one socket, and a burst
of wrk connections can then land on a single worker, which would lower the ceiling unfairly.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
from collections.abc import Callable

import uvicorn

from diabetes_service.supervisor.listeners import Listeners
from loadtests.bench.constant_app import app


def serve_one(sock: object) -> None:
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        ws="none",  # as our workers: neither serves WebSockets
        lifespan="off",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        log_level="warning",
    )
    uvicorn.Server(config).run(sockets=[sock])  # type: ignore[list-item]


def run_forked(sockets: list, serve: Callable[[object], None]) -> None:
    """One forked worker per socket running `serve(sock)`; SIGTERM/SIGINT forwarded; until all exit."""
    children = []
    for sock in sockets:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            serve(sock)
            os._exit(0)
        children.append(pid)

    def forward(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child, 0)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.constant_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    listeners = Listeners(args.host, args.port, args.workers)
    run_forked(listeners.slots, serve_one)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
