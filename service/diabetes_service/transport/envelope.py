"""One envelope around every call, REST or gRPC: keys, the concurrency slot, request ids, metrics,
the access log and the server span, in one place.

A transport (the ASGI app, the gRPC server) decodes nothing here: for each call it asks, in order,
- `open`: the call's clock, request id and server span (tracing on), before anything can fail;
- `admit`: the key (public routes excepted), the key's rate (`--rate-limit`, transport/rate_limit.py:
  per key, per client address without keys), then for a scoring call a concurrency slot, within
  the worker's share of the replica's `max_concurrent_requests`; `release` gives the slot back;
- `close`: metrics, the access log and the span's end, with the status the call was answered with
  (a gRPC call's by the HTTP status REST gives the same outcome, so dashboards cover both), and,
  with `--log-payloads`, the call handed to the payload sink (observability/payloads.py: a queue
  append; the records are built and written in its own thread).
A refusal is raised as the caller's own error (`HTTPError` 401, `RateLimited` 429) or as a transport-neutral one
(scoring/errors.py `TooManyInFlight`), which each protocol words its own way. The scoring timeout
bounds the prediction itself, in the runner (scoring/runner.py): the one part of a call that can
run long, and in a thread; a bound around the whole call here would cost a task per request.

A cross-cutting step is one step here: payload records in `close`; the rollout's choice of model
version in `open` (scoring/rollout.py: it rides on the call's context, so that the runner under any
protocol finds it). The steps are plain methods the transport calls around
its own await, not a coroutine that wraps the handler: measured in a loop on this machine (Python
3.11), the same steps cost ~0.5 µs a call inline and ~1.05 µs through a wrapping coroutine, and the
difference is ~0.5% of a 1-row request's ~100 µs of server CPU, a quarter of the 2% a hot-path
change may cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from random import getrandbits
from time import perf_counter
from typing import Any

from diabetes_service.observability import tracing
from diabetes_service.observability.accesslog import AccessLog
from diabetes_service.observability.metrics import Metrics
from diabetes_service.scoring.core import ModelIdentity
from diabetes_service.scoring.errors import TooManyInFlight
from diabetes_service.scoring.rollout import Rollout
from diabetes_service.scoring.state import ServiceState
from diabetes_service.settings import ServiceSettings
from diabetes_service.transport.auth import KeyChecker
from diabetes_service.transport.rate_limit import for_settings as rate_limiter

MAX_REQUEST_ID = 200


@dataclass(slots=True)
class Call:
    """One call in the envelope, whatever its transport."""

    verb: str  # the access log's method column: the HTTP method, or GRPC
    route: str  # the metrics label: a route's template, "unmatched", or grpc:<service>/<call>
    request_id: str
    started: float
    span: Any = None  # the server span and its context token, tracing on
    code: int | None = None  # the transport's own status code where it is not HTTP's (gRPC), for the span


class Envelope:
    def __init__(self, settings: ServiceSettings, state: ServiceState) -> None:
        self.state = state
        self.keys = KeyChecker(key.get_secret_value() for key in settings.api_keys)
        self.limiter = rate_limiter(settings.rate_limit, len(settings.api_keys))  # None: no limit
        self.metrics = Metrics(settings.metrics_dir)
        self.access_log = AccessLog(settings.access_log)
        self.in_flight = 0
        limit = settings.max_concurrent_requests
        # The limit is per replica: each of the replica's workers takes its share, rounded up.
        self.concurrency_limit = None if limit is None else -(-limit // max(1, settings.workers or 1))
        # Safe rollout: `open` chooses each call's version (scoring/rollout.py); None: no rollout.
        self.rollout = state.rollout = None if settings.rollout is None else Rollout(settings, self.metrics)
        self.spans = tracing.start(settings.service_name)  # None: OTEL_* unset, nothing at all changes
        if self.spans is not None:
            state.runner_type = self.spans.runner_type(state.runner_type)
        self.payloads = None  # --log-payloads: the sink, its runner keeping each request's input and answer
        if settings.log_payloads:
            from diabetes_service.observability.payloads import PayloadSink

            self.payloads = PayloadSink(settings, state, self.metrics.count_payload_records)
            state.runner_type = self.payloads.runner_type(state.runner_type)

    def log_routes(self, routes: dict[str, str], transport: str) -> None:
        """A transport's scoring routes (label -> protocol name), whose calls payload logging records."""
        if self.payloads is not None:
            self.payloads.add_routes(routes, transport)

    def trace_steps(self, owner: Any) -> None:
        """Give `owner`'s parse steps (a protocol's `parse_steps`) their spans, tracing on."""
        if self.spans is not None:
            self.spans.wrap_steps(owner)

    def open(self, verb: str, route: str, request_id: str, path: str, carrier: Any) -> Call:
        """A call starting now; `carrier` (headers or gRPC metadata) may hold the caller's trace."""
        call = Call(verb, route, request_id, perf_counter())
        if self.rollout is not None:
            self.rollout.route(carrier)
        if self.spans is not None:
            self.spans.open(call, path, carrier)
        return call

    def admit(self, public: bool, authorization: bytes | None, scoring: bool, client: Any = None) -> bool:
        """Let the call in or raise; True: it holds a concurrency slot, to `release` when done.
        `client`: the caller's address (host, port), what the rate limit counts by without keys."""
        if not public:
            key = self.keys.check(authorization)
            if self.limiter is not None:
                self.limiter.admit(key, client)
        if scoring and self.concurrency_limit is not None:
            if self.in_flight >= self.concurrency_limit:
                raise TooManyInFlight("too many requests in flight; retry shortly")
            self.in_flight += 1
            return True
        return False

    def release(self) -> None:
        self.in_flight -= 1

    def close(
        self,
        call: Call,
        status: int,
        rows: int = 0,
        method: str | None = None,
        model: ModelIdentity | None = None,
        error: str | bytes | None = None,
    ) -> None:
        """Count and log the answered call; `model`: the version that answered, where one did; `error`:
        a refusal's message, or its HTTP body (read for its message off the request path)."""
        elapsed = perf_counter() - call.started
        metrics = self.metrics
        metrics.observe(call.route, status, elapsed)
        if rows:
            metrics.count_predictions(method, rows)  # type: ignore[arg-type]
        state = self.state
        self.access_log.write(call.request_id, call.verb, call.route, status, rows, elapsed, state.model_version)
        if call.span is not None:
            name, version = (model.name, model.version) if model else (state.model_name, state.model_version)
            self.spans.close(call, status, rows, method, name, version)  # type: ignore[union-attr]
        if self.payloads is not None:
            self.payloads.offer(call.route, call.request_id, status, error, model)

    def shutdown(self) -> None:
        """The worker stops: the payload records, the access log's and the metrics' buffers leave.
        Called again once gRPC has drained (supervisor/worker.py): each step can run twice."""
        if self.payloads is not None:
            self.payloads.close()
        self.access_log.flush()
        self.metrics.save()

    def end_tracing(self) -> None:
        """Send the spans left (after the worker said it stopped: the exporter may take its timeout)."""
        if self.spans is not None:
            self.spans.shutdown()


def request_id(sent: bytes | None) -> str:
    """The caller's id when it is a fit one (printable ASCII, at most 200 characters), else a new one."""
    if sent and len(sent) <= MAX_REQUEST_ID and sent.isascii() and sent.decode().isprintable():
        return sent.decode()
    # An id need only be unique, not secret: the process's PRNG (reseeded in every forked worker)
    # spares a system call per request.
    return f"{getrandbits(128):032x}"
