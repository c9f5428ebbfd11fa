"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set.

On, every call, REST or gRPC, gets a server span that continues the caller's W3C `traceparent`
(an HTTP header, or gRPC metadata), with the route, status, rows, scoring method and the served
model's name and version, and child spans for parsing the body and scoring it; spans leave over
OTLP/HTTP in batches, configured by the standard OTEL_* variables (headers, timeout, sampler,
resource attributes). It needs the `otel` extra (opentelemetry-sdk and the OTLP/HTTP exporter).

The request envelope (transport/envelope.py) opens and closes the server span; the child spans come
from explicit hooks chosen once at start-up: each protocol names its parse steps (`parse_steps`,
functions it keeps as attributes), wrapped here in a "parse" span, and the served-model state
scores through `runner_type`, replaced here by a subclass whose predict is a "score" span. Off,
`start` answers None and nothing is wrapped: the scoring path holds no tracing code at all (even a
no-op context manager there costs ~1% of a 1-row request), only the envelope's two checks of None.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

log = logging.getLogger("diabetes_service")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
GRPC_VERB = "GRPC"  # the access log's method column for a gRPC call (envelope.Call.verb)


def wanted(environ: dict[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def start(service_name: str) -> Spans | None:
    """The worker's spans when the environment asks for tracing, else None (once per worker process,
    after the fork: the exporter's thread belongs to the worker)."""
    if not wanted():
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_EXPORTER_OTLP_ENDPOINT is set but tracing needs the otel extra "
            "(pip install 'diabetes-scoring[otel]'): not tracing"
        )
        return None
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, where set, win over the service's own name.
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return Spans(provider)


class Spans:
    """The server span of each call and the child spans of its phases, for one worker."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.provider = provider
        self.tracer = provider.get_tracer("diabetes_service")
        self._context = context
        self._trace = trace
        self._server = SpanKind.SERVER
        self._error = Status(StatusCode.ERROR)
        self._propagator = TraceContextTextMapPropagator()

    def open(self, call: Any, path: str, carrier: Any) -> None:
        """Start `call`'s server span as the current one (phases nest under it), continuing the
        caller's trace from `carrier`: ASGI's header list, or a gRPC call's metadata."""
        if call.verb == GRPC_VERB:
            name = path.lstrip("/")  # `inference.GRPCInferenceService/ModelInfer`, as RPC spans are named
            service, _, method = name.partition("/")
            getter: Any = _METADATA
            attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method}
        else:
            name = f"{call.verb} {call.route}"  # the route's template, as in /metrics
            getter = _HEADERS
            attributes = {"http.request.method": call.verb, "url.path": path, "http.route": call.route}
        parent = self._propagator.extract(carrier or [], getter=getter)
        span = self.tracer.start_span(name, context=parent, kind=self._server, attributes=attributes)
        token = self._context.attach(self._trace.set_span_in_context(span, parent))
        call.span = (span, token)

    def close(self, call: Any, status: int, rows: int, method: str | None, name: str, version: str) -> None:
        span, token = call.span
        # A gRPC call's status is the HTTP one REST gives the same outcome (metrics and the access
        # log count it so too); its own code is in rpc.grpc.status_code.
        span.set_attribute("http.response.status_code", status)
        if call.code is not None:
            span.set_attribute("rpc.grpc.status_code", call.code)
        span.set_attribute("diabetes.model.name", name)
        span.set_attribute("diabetes.model.version", version)
        span.set_attribute("diabetes.request_id", call.request_id)
        if rows:
            span.set_attributes({"diabetes.rows": rows, "diabetes.method": method or ""})
        if status >= 500:  # a server span's error is the server's fault only
            span.set_status(self._error)
        self._context.detach(token)
        span.end()

    def wrap_steps(self, owner: Any) -> None:
        """Each of `owner`'s parse steps (a protocol's `parse_steps`) in a "parse" span."""
        for name in owner.parse_steps:
            setattr(owner, name, self._parse_span(getattr(owner, name)))

    def _parse_span(self, step: Callable[..., Any]) -> Callable[..., Any]:
        tracer = self.tracer

        def parse(*args: Any) -> Any:
            with tracer.start_as_current_span("parse"):
                return step(*args)

        return parse

    def runner_type(self, base: type) -> type:
        """`base` (the scoring runner) with each prediction in a "score" span."""
        tracer = self.tracer

        class TracedRunner(base):  # type: ignore[valid-type, misc]
            async def predict(self, matrix: Any, method: str) -> Any:
                attributes = {"diabetes.rows": len(matrix), "diabetes.method": method}
                with tracer.start_as_current_span("score", attributes=attributes):
                    return await super().predict(matrix, method)

        TracedRunner.__name__ = TracedRunner.__qualname__ = f"Traced{base.__name__}"
        return TracedRunner

    def shutdown(self) -> None:
        """The worker is stopping: send what is left."""
        self.provider.shutdown()


class _HeaderGetter:
    """OpenTelemetry's propagator reads the ASGI header list (lower-case byte pairs) through this."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted_name = key.lower().encode()
        values = [value.decode("latin-1") for name, value in carrier if name == wanted_name]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]


class _MetadataGetter:
    """... and a gRPC call's metadata (grpclib's multidict of lower-case names) through this."""

    def get(self, carrier: Any, key: str) -> list[str] | None:
        values = carrier.getall(key.lower(), []) if hasattr(carrier, "getall") else []
        return [value if isinstance(value, str) else value.decode("latin-1") for value in values] or None

    def keys(self, carrier: Any) -> list[str]:
        return list(carrier.keys()) if hasattr(carrier, "keys") else []


_HEADERS = _HeaderGetter()
_METADATA = _MetadataGetter()
