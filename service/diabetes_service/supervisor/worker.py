"""One worker process: uvicorn serving the scoring app, with the settings the supervisor validated.

A worker started with the service listens at once on the socket the supervisor opened for its
slot, so that the probes answer while the model loads. A replacement for a worker that died loads
the model first and only then serves its slot's socket: until then the live workers accept from
it (adoption.py), or, where none could, it is only bound and the kernel sends new connections to
the live sockets instead of queueing them on a worker that cannot answer yet.

With a gRPC port, the worker also runs the Open Inference Protocol's gRPC server on the same event
loop (transport/grpc_server.py), started once the worker is warm: its modules (grpclib, protobuf and the
message classes, ~60-100 ms) are imported in a thread then, off the HTTP side's way to its first
answer, and the worker reports ready (/health/ready) only once both listen. SIGTERM stops both:
neither takes new calls, both finish theirs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures.thread  # noqa: F401 - see below
import functools
import importlib
import logging
import os
import socket
import sys
from typing import Any

import uvicorn

# What uvicorn imports only when a worker starts its loop (uvloop) and what the model's load thread
# needs (PyYAML, threads): imported here, so in the supervisor that workers fork from, once, instead of in every
# worker at the same moment on shared cores (~40 ms each).
import uvloop  # noqa: F401
import yaml  # noqa: F401 - each worker reads the model's MLmodel file (pyfunc.py)

from diabetes_service import board
from diabetes_service.settings import ServiceSettings
from diabetes_service.supervisor.adoption import Adopter
from diabetes_service.transport.app import ScoringApp
from diabetes_service.transport.header_limits import HeaderLimitedProtocol


class WorkerServer(uvicorn.Server):
    """uvicorn's server, plus the worker's duties on its 0.1 s tick and at SIGTERM."""

    def __init__(self, config: uvicorn.Config, app: ScoringApp, channel: socket.socket | None = None) -> None:
        super().__init__(config)
        self.scoring_app = app
        self.channel = channel  # from the supervisor: dead workers' sockets to adopt (adoption.py)
        self.adopter: Adopter | None = None
        self.supervisor = os.getppid()
        self.grpc: Any = None  # transport.grpc_server.GrpcTransport, with a gRPC port, once it listens
        self.grpc_starting: asyncio.Task | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        if app.settings.grpc_port:
            app.state.grpc_listening = False  # not ready before it is

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = loop = asyncio.get_running_loop()
        await super().startup(sockets)
        if self.channel is not None and self.started:
            config = self.config
            # What uvicorn's startup hands its own servers: adopted connections are served, counted
            # and drained like the worker's own.
            factory = functools.partial(
                config.http_protocol_class, config=config, server_state=self.server_state, app_state=self.lifespan.state
            )
            self.adopter = Adopter(self.channel, factory, config.backlog)
        if self.scoring_app.settings.grpc_port:
            # From the load thread the moment the model is warm; or now, if it is already (a
            # replacement loads before it listens; a quick load may have finished meanwhile).
            self.scoring_app.lifecycle.on_warm = lambda: loop.call_soon_threadsafe(self._start_grpc)
            if self.scoring_app.state.warm:
                self._start_grpc()

    def _start_grpc(self) -> None:
        if self.grpc_starting is None and not self.should_exit:
            self.grpc_starting = asyncio.get_running_loop().create_task(self._grpc_up())

    async def _grpc_up(self) -> None:
        # Imported in a thread: the event loop goes on answering HTTP meanwhile.
        module = await asyncio.to_thread(importlib.import_module, "diabetes_service.transport.grpc_server")
        if self.should_exit:
            return
        transport = module.GrpcTransport(self.scoring_app)
        await transport.start()
        self.grpc = transport
        self.scoring_app.state.grpc_listening = True
        if self.should_exit:  # SIGTERM came while it started
            transport.stop()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.adopter is not None:
            self.adopter.close()
        if self.grpc_starting is not None and not self.grpc_starting.done():
            self.grpc_starting.cancel()
        if self.grpc is not None:
            stopping = self.grpc.stop()  # already under way since SIGTERM: both drain side by side
            await super().shutdown(sockets)
            await stopping
            # gRPC calls may end after the lifespan's shutdown: their payload records and log lines too.
            self.scoring_app.envelope.shutdown()
            return
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: Any) -> None:
        # Readiness turns 503 the moment SIGTERM arrives, before uvicorn stops taking requests;
        # the slot leaves the heartbeat watch, since a drain stops the ticks that beat.
        self.scoring_app.state.draining = True
        if board.current is not None:
            workers, slot = board.current
            workers.mark(slot, board.AWAY)
        if self.grpc is not None and self.loop is not None:
            # A signal handler runs between any two bytecodes of the loop: hand the stop to the loop.
            self.loop.call_soon_threadsafe(self.grpc.stop)
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        # The beat comes from the event loop itself: a loop stuck in a model call stops it.
        if board.current is not None:
            workers, slot = board.current
            workers.beat(slot)
            self.scoring_app.lifecycle.follow_generation()
        if os.getppid() != self.supervisor and not self.should_exit:
            # The supervisor is gone (SIGKILL, OOM): nobody would stop or replace this worker.
            logging.getLogger("diabetes_service").warning("supervisor gone: worker %d drains and stops", os.getpid())
            self.handle_exit(0, None)
        return await super().on_tick(counter)


def run_worker(
    settings: ServiceSettings, sock: socket.socket, channel: socket.socket | None = None, *, replacement: bool = False
) -> None:
    """Serve `sock` until SIGTERM; a `replacement` loads the model first and serves only once warm."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    app = ScoringApp(settings)
    if replacement:
        app.lifecycle.load()
    config = uvicorn.Config(
        app,
        loop="uvloop",
        http=HeaderLimitedProtocol,  # httptools, with a header deadline and size cap (slowloris, huge headers)
        ws="none",  # no WebSocket route: "auto" imported wsproto and websockets, ~50 ms per worker start
        lifespan="on",
        access_log=False,  # the app writes its own JSON access log
        proxy_headers=False,  # nothing here reads the client address that middleware would rewrite
        log_level="warning",
        timeout_graceful_shutdown=settings.graceful_timeout_seconds or None,
        timeout_keep_alive=30,
        server_header=False,
        date_header=False,
    )
    WorkerServer(config, app, channel).run(sockets=[sock])
