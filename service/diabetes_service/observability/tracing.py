"""OpenTelemetry traces, off unless OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set.

On, every HTTP request gets a server span that continues the caller's W3C `traceparent`, with the
route, status, rows, scoring method and the served model's name and version, and child spans for
parsing the body and scoring it; spans leave over OTLP/HTTP in batches, configured by the standard
OTEL_* variables (headers, timeout, sampler, resource attributes). It needs the `otel` extra
(opentelemetry-sdk and the OTLP/HTTP exporter).

Off, it costs nothing per request: `instrument` leaves the application, the protocol and the
runner untouched. On, it wraps the request in a span and the two phases in child spans from the
outside (`_trace_phases`), so that the scoring path holds no tracing code at all; even a no-op
context manager there costs ~1% of a 1-row request.
"""

from __future__ import annotations

import logging
import os
from typing import Any

log = logging.getLogger("diabetes_service")

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_tracer: Any = None  # the worker's tracer, once `instrument` turned tracing on


def wanted(environ: dict[str, str] | None = None) -> bool:
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


def instrument(app: Any, service_name: str) -> None:
    """Trace `app`'s requests when the environment asks for it (once per worker process, after the fork:
    the exporter's thread belongs to the worker)."""
    global _tracer
    if not wanted():
        return
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
        return
    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, where set, win over the service's own name.
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if _tracer is None:
        _trace_phases()
    _tracer = provider.get_tracer("diabetes_service")
    # The request span wraps the app's own __call__: a subclass made here, so that the app's hot
    # path has no tracing branch at all when tracing is off.
    app.__class__ = _traced(type(app), provider)


def _traced(base: type, provider: Any) -> type:
    from opentelemetry.trace import SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    propagator = TraceContextTextMapPropagator()
    getter = _HeaderGetter()

    class Traced(base):  # type: ignore[valid-type, misc]
        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            if scope["type"] != "http":
                await base.__call__(self, scope, receive, send)
                if scope["type"] == "lifespan":
                    provider.shutdown()  # the worker is stopping: send what is left
                return
            method, path = scope["method"], scope["path"]
            matched = self.router.match(method, path)
            route = "unmatched" if matched is None else matched[0].path  # the template, as in /metrics
            parent = propagator.extract(scope["headers"], getter=getter)
            attributes = {"http.request.method": method, "url.path": path, "http.route": route}
            with _tracer.start_as_current_span(
                f"{method} {route}", context=parent, kind=SpanKind.SERVER, attributes=attributes
            ) as request_span:

                async def answer(message: dict) -> None:
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        request_span.set_attribute("http.response.status_code", status)
                        for name, value in message.get("headers", ()):
                            if name == b"x-model-name":
                                request_span.set_attribute("diabetes.model.name", value.decode())
                            elif name == b"x-model-version":
                                request_span.set_attribute("diabetes.model.version", value.decode())
                            elif name == b"x-request-id":
                                request_span.set_attribute("diabetes.request_id", value.decode())
                        if status >= 500:  # a server span's error is the server's fault only
                            request_span.set_status(Status(StatusCode.ERROR))
                    await send(message)

                # The span is the current one for the app's coroutine: `span()` nests under it.
                await base.__call__(self, scope, receive, answer)

    Traced.__name__ = Traced.__qualname__ = f"Traced{base.__name__}"
    return Traced


def _trace_phases() -> None:
    """Child spans for parsing the body (the protocol's call of the shared schema) and for scoring
    (the runner's predict, which also names the rows and method on the request's span)."""
    from opentelemetry import trace

    from diabetes_service.protocols import azureml as protocol
    from diabetes_service.scoring.runner import PredictionRunner

    parse = protocol.parse_score_request
    predict = PredictionRunner.predict

    def traced_parse(body: bytes) -> Any:
        with _tracer.start_as_current_span("parse"):
            return parse(body)

    async def traced_predict(self: PredictionRunner, matrix: Any, method: str) -> Any:
        attributes = {"diabetes.rows": len(matrix), "diabetes.method": method}
        trace.get_current_span().set_attributes(attributes)
        with _tracer.start_as_current_span("score", attributes=attributes):
            return await predict(self, matrix, method)

    protocol.parse_score_request = traced_parse  # type: ignore[assignment]
    PredictionRunner.predict = traced_predict  # type: ignore[method-assign]


class _HeaderGetter:
    """OpenTelemetry's propagator reads the ASGI header list (lower-case byte pairs) through this."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted_name = key.lower().encode()
        values = [value.decode("latin-1") for name, value in carrier if name == wanted_name]
        return values or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [name.decode("latin-1") for name, _ in carrier]
