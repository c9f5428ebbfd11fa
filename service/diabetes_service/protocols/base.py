"""What every protocol adapter declares: its routes (with path parameters), its error body and its
part of the API description.

An adapter decodes its wire format, asks the core for a checked matrix, runs it through the runner
and encodes the answer; its handlers return the response together with what they scored (rows and
method) for the metrics and the access log. Errors reach the adapter's `error_response` either as
`HTTPError` (transport: 400 unreadable body, 401, 413, 415...) or as the core's `ScoringError`
(the input's content), which the adapter maps to its own status; the transport-neutral refusals
(scoring/errors.py: not ready, too many in flight, timed out) become an `HTTPError` through the
adapter's `refusal` first. An adapter names its parse steps (`parse_steps`), the functions it keeps
as attributes and calls on each request, so that tracing can wrap them in spans with no code on
the request path when it is off.

The router is written by hand: a dictionary lookup for fixed paths, then the templates in order
(about 40 lines). Measured against Starlette's route matching (`starlette.routing.Route.matches`,
its compiled path regex and method check) in front of the same handlers, on the 1-row hot path:
- in process, one match: 0.17 µs here against 1.9 µs for `/score` and 4.8 µs for `/invocations`
  (Starlette tries the routes in order: 2nd and 7th of the 13), on an app cost of ~20 µs a request;
- end to end, `python -m loadtests.bench --also-starlette` (both routers on the same 2 worker
  processes, measured one right after the other; 2 shared cores with a load average of 8 from other
  work): 1-row at 16 connections 3,714 req/s and 96 µs of server CPU a request here, against 3,087
  req/s (83%) and 108 µs with Starlette's matching; 1-row at one connection 133 against 163 µs.
That gap (5-20% of the 1-row request, more as the V2 protocol's templated routes lengthen the list
Starlette walks) is the whole margin of `/invocations` over its target of 90% of `/score`'s req/s,
so the hand-written router stays.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from diabetes_service.protocols.http import RETRY_AFTER, HTTPError, Request, Response
from diabetes_service.protocols.openapi_models import FeatureModels
from diabetes_service.scoring.core import ScoringCore, ScoringError
from diabetes_service.scoring.errors import ScoringTimeout, Unavailable

Handler = Callable[[Request], Awaitable[Response]]

_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

# One line per status a route may answer, for the API description.
STATUS_DESCRIPTIONS = {
    400: "Unreadable body (malformed JSON or CSV, a bad Content-Length)",
    401: "Missing or invalid API key",
    404: "No such model",
    408: "Scoring took longer than the scoring timeout",
    413: "Body or row count over the limit",
    415: "Content type not supported by this route",
    422: "Invalid input: the message names the field and the problem",
    429: "Over the rate limit of this API key (of the client address without keys): retry after Retry-After seconds",
    503: "Not ready yet, draining, or too many requests in flight: retry after the Retry-After seconds",
}


@dataclass(frozen=True)
class Body:
    """One media type a route accepts or answers, for the API description."""

    # A JSON Schema, usually {"$ref": ...} to one of the protocol's `schemas`, or one built from the model.
    schema: dict[str, Any] | Callable[[ScoringCore], dict[str, Any]]
    example: Callable[[ScoringCore], Any] | None = None  # built from the served model


def ref(model_name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model_name}"}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # may hold {name} parameters, matched against one path segment
    handler: Handler
    protocol: Protocol
    public: bool = False  # answered without an API key
    summary: str = ""
    request: dict[str, Body] = field(default_factory=dict)  # by media type
    answer: dict[str, Body] = field(default_factory=dict)
    answer_description: str = "OK"
    errors: tuple[int, ...] = ()  # 4xx/5xx this route can answer besides 401 (added where keys apply)
    documented: bool = True

    @property
    def parameters(self) -> list[str]:
        return _PARAMETER.findall(self.path)


class Router:
    """Fixed paths by one dictionary lookup (the hot path), templated paths by regular expression."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.fixed: dict[tuple[str, str], Route] = {}
        self.templated: list[tuple[str, re.Pattern[str], Route]] = []
        self._methods: dict[str, list[str]] = {}
        self._prefixes: list[tuple[str, Protocol]] = []
        for route in routes:
            self._methods.setdefault(route.path, []).append(route.method)
            prefix = route.protocol.prefix
            if prefix and all(prefix != known for known, _ in self._prefixes):
                self._prefixes.append((prefix, route.protocol))
            if route.parameters:
                self.templated.append((route.method, _compile(route.path), route))
            else:
                self.fixed[(route.method, route.path)] = route

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str] | None] | None:
        """The route and its path parameters (None for a fixed path), or None: no such route."""
        route = self.fixed.get((method, path))
        if route is not None:
            return route, None
        for route_method, pattern, templated in self.templated:
            if route_method == method:
                found = pattern.fullmatch(path)
                if found:
                    return templated, found.groupdict()
        return None

    def owner(self, path: str) -> Protocol | None:
        """The protocol serving `path` with some method, to word a 405 in its own error body; else
        the protocol whose path prefix holds it (`/v2/...`), to word a 404 in its own."""
        for route in self.fixed.values():
            if route.path == path:
                return route.protocol
        for _, pattern, route in self.templated:
            if pattern.fullmatch(path):
                return route.protocol
        for prefix, protocol in self._prefixes:
            if path == prefix or path.startswith(prefix + "/"):
                return protocol
        return None

    def allowed(self, path: str) -> list[str]:
        """The methods `path` is served with (for a 405 and its Allow header); empty: no such path."""
        methods = self._methods.get(path)
        if methods:
            return methods
        return [method for method, pattern, _ in self.templated if pattern.fullmatch(path)]


def _compile(template: str) -> re.Pattern[str]:
    pattern, last = "", 0
    for found in _PARAMETER.finditer(template):
        pattern += re.escape(template[last : found.start()]) + f"(?P<{found.group(1)}>[^/]+)"
        last = found.end()
    return re.compile(pattern + re.escape(template[last:]))


def message_of(error: HTTPError | ScoringError) -> str:
    """The message, starting with the field it is about (the core's messages say only the problem)."""
    if isinstance(error, ScoringError) and error.field:
        return f"{error.field}: {error.message}"
    return error.message


class Protocol:
    """A wire protocol over the scoring core. Subclasses declare routes and their error body."""

    name: ClassVar[str]
    # The pydantic model of this protocol's error body, for the API description.
    error_model: ClassVar[type[BaseModel]]
    # The status of each ScoringError kind (core.INVALID, core.TOO_MANY_ROWS).
    statuses: ClassVar[dict[str, int]]
    # A path prefix every path under which is this protocol's (`/v2`): a path under it that matches
    # no route is a 404 in this protocol's error body. None: the protocol owns only its routes.
    prefix: ClassVar[str | None] = None
    # The attributes holding this protocol's parse steps (body bytes to what the core checks), each
    # called once per request: tracing wraps each in a "parse" span (observability/tracing.py).
    parse_steps: ClassVar[tuple[str, ...]] = ()

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def error_response(self, error: HTTPError | ScoringError) -> Response:
        raise NotImplementedError

    def refusal(self, error: Unavailable | ScoringTimeout) -> HTTPError:
        """A transport-neutral refusal in HTTP's terms: 408 past the scoring timeout (as Azure ML
        endpoints answer: clients do not retry it as they would a gateway's 504), else a 503 to retry."""
        if isinstance(error, ScoringTimeout):
            return HTTPError(408, str(error))
        return HTTPError(503, error.message, headers=list(RETRY_AFTER))

    def parameter_schema(self, name: str, core: ScoringCore) -> dict[str, Any]:
        """The JSON Schema of path parameter `name` of this protocol's routes, for the API description."""
        return {"type": "string"}

    def status_of(self, error: ScoringError) -> int:
        return self.statuses[error.kind]

    def schemas(self, core: ScoringCore, features: FeatureModels) -> list[type[BaseModel]]:
        """The pydantic models this protocol's routes refer to, narrowed to the served model."""
        return [self.error_model]
