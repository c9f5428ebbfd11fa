"""`python -m loadtests.bench.routed_server --port P --workers N --model PATH`.

The scoring app itself, in N forked uvicorn workers laid out as the constant-reply ceiling's (one
SO_REUSEPORT socket each), loading a local model folder, with two routers in front of the same
handlers: its own for every path, and Starlette's route matching for the same paths under
`/starlette` (`/starlette/score`). Both are measured on the same processes one right after the
other, so the gap between them is the router's alone (issue 11: keep the hand-written router only
if it pays).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import uvicorn

from diabetes_service.protocols.base import Protocol, Route
from diabetes_service.settings import ServiceSettings
from diabetes_service.supervisor.listeners import Listeners
from diabetes_service.transport.app import ScoringApp
from loadtests.bench.constant_server import run_forked


class StarletteRouter:
    """The app's routing done by Starlette's `Route.matches` (its compiled path regex and method check)."""

    def __init__(self, routes: list[Route]) -> None:
        from starlette.routing import Match
        from starlette.routing import Route as StarletteRoute

        self._full = Match.FULL
        self._routes = [(StarletteRoute(r.path, endpoint=_unused, methods=[r.method]), r) for r in routes]

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str] | None] | None:
        scope = {"type": "http", "method": method, "path": path}
        for starlette_route, route in self._routes:
            found, child = starlette_route.matches(scope)
            if found is self._full:
                return route, child.get("path_params") or None
        return None

    def allowed(self, path: str) -> list[str]:
        return [r.method for s, r in self._routes if s.path_regex.fullmatch(path)]

    def owner(self, path: str) -> Protocol | None:
        return next((r.protocol for s, r in self._routes if s.path_regex.fullmatch(path)), None)


class BothRouters:
    """Starlette's matching for paths under /starlette (the prefix cut off), ours for the others."""

    PREFIX = "/starlette"

    def __init__(self, ours: Any, starlette: StarletteRouter) -> None:
        self.ours, self.starlette = ours, starlette
        self.allowed, self.owner = ours.allowed, ours.owner

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str] | None] | None:
        if path.startswith(self.PREFIX):
            return self.starlette.match(method, path[len(self.PREFIX) :])
        return self.ours.match(method, path)


async def _unused(request: Any) -> None:  # Starlette wants an endpoint; the app calls its own handlers
    raise NotImplementedError


def serve_one(sock: object, model: str) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    app = ScoringApp(ServiceSettings(model_path=model, model_name="bench", model_version="1"))
    app.router = BothRouters(app.router, StarletteRouter(app.routes))  # type: ignore[assignment]
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        date_header=False,
        log_level="warning",
    )
    uvicorn.Server(config).run(sockets=[sock])  # type: ignore[list-item]


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.routed_server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--model", required=True, help="a local MLflow model folder or model.pkl")
    args = parser.parse_args()
    sockets = Listeners(args.host, args.port, args.workers).slots
    run_forked(sockets, lambda sock: serve_one(sock, args.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
