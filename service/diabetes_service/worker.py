"""One worker process: uvicorn serving the scoring app on a socket the supervisor opened."""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

import uvicorn

from diabetes_service.app import ScoringApp, create_app


class DrainingServer(uvicorn.Server):
    """Turns readiness to 503 the moment SIGTERM arrives, before uvicorn stops taking requests."""

    def __init__(self, config: uvicorn.Config, app: ScoringApp) -> None:
        super().__init__(config)
        self.scoring_app = app

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.scoring_app.state.draining = True
        super().handle_exit(sig, frame)


def run_worker(sock: socket.socket, graceful_timeout: float) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    app = create_app()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,  # the app writes its own JSON access log
        proxy_headers=False,  # nothing here reads the client address that middleware would rewrite
        log_level="warning",
        timeout_graceful_shutdown=graceful_timeout or None,
        timeout_keep_alive=30,
        server_header=False,
        date_header=False,
    )
    DrainingServer(config, app).run(sockets=[sock])
