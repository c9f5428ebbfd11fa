"""One worker's gRPC server: the Open Inference Protocol's calls (protocols/v2/grpc.py), each in the
request envelope (envelope.py) as every REST request is: key, rate limit, concurrency slot, request id,
metrics, access log and server span.

The transport is grpclib (pure Python, HTTP/2 by h2) rather than grpcio: grpcio's C core is 18 MB
installed and would take the image past its 350 MB budget (measured: 346 MB without gRPC, ~366 MB
with grpcio and protobuf); grpclib with h2, multidict and protobuf adds ~4 MB. Every worker runs one
grpclib server on its own event loop (the one uvicorn runs on, uvloop), bound with SO_REUSEPORT to
the service's gRPC port, as its HTTP socket is (supervisor/listeners.py). Started on the worker's
loop once the model is warm; on SIGTERM it refuses new calls and drains the ones in flight.

A call's request id is its `x-request-id` metadata, else the message's own `id` (Triton's
client's `request_id`), else a new one, as REST's is the header's or a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server

from diabetes_service.observability.tracing import GRPC_VERB
from diabetes_service.protocols.v2.grpc import (
    HTTP_STATUS,
    PUBLIC,
    REFUSALS,
    ROUTE,
    SCORING,
    Answered,
    CallError,
    V2GrpcServicer,
    metadata_value,
    receive_message,
    status_of,
)
from diabetes_service.protocols.v2.grpc_schema import SERVICE
from diabetes_service.transport.envelope import request_id
from diabetes_service.transport.rate_limit import RateLimited

if TYPE_CHECKING:
    from diabetes_service.transport.app import ScoringApp

log = logging.getLogger("diabetes_service")


class GrpcCalls:
    """grpclib's routing table for the servicer's calls, each wrapped in the envelope, and the count
    of calls in flight that a drain waits for."""

    def __init__(self, app: ScoringApp) -> None:
        self.envelope = app.envelope
        self.limit = app.settings.max_body_bytes
        self.servicer = V2GrpcServicer(app.state)
        self.envelope.trace_steps(self.servicer)
        self.envelope.log_routes({ROUTE + name: "v2" for name in SCORING}, "grpc")
        self.in_flight = 0
        self.draining = False
        self.idle = asyncio.Event()
        self.idle.set()

    def __mapping__(self) -> dict[str, Handler]:
        """`/inference.GRPCInferenceService/<call>` to a unary handler."""
        return {
            f"/{SERVICE}/{name}": Handler(self._wrap(name, call, request), Cardinality.UNARY_UNARY, request, reply)
            for name, (call, request, reply) in self.servicer.calls().items()
        }

    def _wrap(self, name: str, answer: Callable[[Any], Awaitable[Answered]], request_type: Any) -> Callable:
        envelope = self.envelope
        route, path = ROUTE + name, f"/{SERVICE}/{name}"
        public, scoring = name in PUBLIC, name in SCORING
        limit = self.limit

        async def handle(stream: Any) -> None:
            call = envelope.open(GRPC_VERB, route, "", path, stream.metadata)
            sent_id = metadata_value(stream, "x-request-id")
            rows, method, model, status, message = 0, None, None, 200, None
            self.in_flight += 1
            self.idle.clear()
            try:
                if self.draining:
                    raise CallError(Status.UNAVAILABLE, "the service is shutting down; call another replica")
                slot = envelope.admit(public, metadata_value(stream, "authorization"), scoring, stream.peer.addr())
                try:
                    request = await receive_message(stream, request_type, limit)
                    if sent_id is None:
                        sent_id = getattr(request, "id", "").encode() or None
                    response, rows, method, model = await answer(request)
                finally:
                    if slot:
                        envelope.release()
                await stream.send_message(response)
            except REFUSALS as exc:
                error = status_of(exc)
                status, call.code, message = HTTP_STATUS.get(error.code, 400), error.code.value, error.message
                if isinstance(exc, RateLimited):  # counted as 429, its Retry-After as trailing metadata
                    status = 429
                    retry = [(name.decode(), value.decode()) for name, value in exc.headers]
                    await stream.send_trailing_metadata(status=error.code, status_message=error.message, metadata=retry)
                    return
                raise GRPCError(error.code, error.message) from None
            except GRPCError:
                raise
            except Exception:
                call.request_id = request_id(sent_id)
                log.exception("unexpected error (gRPC %s, request %s)", name, call.request_id)
                status, call.code, message = 500, Status.INTERNAL.value, "internal error"
                raise GRPCError(Status.INTERNAL, f"internal error; quote request id {call.request_id}") from None
            finally:
                self.in_flight -= 1
                if not self.in_flight:
                    self.idle.set()
                call.request_id = call.request_id or request_id(sent_id)
                envelope.close(call, status, rows, method, model, message)

        return handle


class GrpcTransport:
    """One worker's gRPC server: started on the worker's loop, drained and stopped on SIGTERM."""

    def __init__(self, app: ScoringApp) -> None:
        self.app = app
        self.calls: GrpcCalls | None = None
        self.server: Server | None = None
        self.stopping: Any = None

    async def start(self) -> None:
        settings = self.app.settings
        self.calls = GrpcCalls(self.app)
        self.server = Server([self.calls])
        # reuse_port: join the port's other workers and the supervisor's anchor (listeners.py).
        await self.server.start(settings.host, settings.grpc_port, reuse_port=True)

    def stop(self) -> Any:
        """Refuse new calls at once (UNAVAILABLE, which gRPC clients may retry on another replica);
        let the ones in flight finish within the graceful timeout; then close."""
        if self.server is not None and self.stopping is None:
            self.calls.draining = True  # type: ignore[union-attr]
            self.stopping = asyncio.get_running_loop().create_task(self._drain())
        return self.stopping

    async def _drain(self) -> None:
        grace = self.app.settings.graceful_timeout_seconds or None
        try:
            await asyncio.wait_for(self.calls.idle.wait(), grace)  # type: ignore[union-attr]
        except TimeoutError:
            log.warning("gRPC: %d call(s) still running after the graceful timeout", self.calls.in_flight)  # type: ignore[union-attr]
        self.server.close()  # cancels whatever still runs
        await self.server.wait_closed()  # type: ignore[union-attr]
