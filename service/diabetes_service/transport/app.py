"""The ASGI application: assembles the protocols' routes, the request envelope and the model's lifecycle.

Protocol adapters (`protocols/`) contribute routes, each with its own error body; this module
wires them together behind one router, builds the API description from the same routes, and
speaks ASGI: every request passes the envelope (transport/envelope.py: keys, rate limit, concurrency slot,
request id, metrics, access log, span) on its way to its route's handler. The model's load, warm-up
and swaps are scoring/lifecycle.py's; the app hears of each version to name it in its answers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from diabetes_service.protocols.azureml import AzureMLProtocol
from diabetes_service.protocols.base import Protocol, Route, Router
from diabetes_service.protocols.http import RETRY_AFTER, HTTPError, Request, Response, read_body, text_response
from diabetes_service.protocols.mlflow import MlflowProtocol
from diabetes_service.protocols.v2.rest import V2RestProtocol
from diabetes_service.scoring.core import ScoringCore, ScoringError
from diabetes_service.scoring.errors import ScoringTimeout, Unavailable
from diabetes_service.scoring.lifecycle import ModelLifecycle
from diabetes_service.scoring.rollout import answered
from diabetes_service.scoring.state import ServiceState
from diabetes_service.settings import ServiceSettings
from diabetes_service.transport.docs import SwaggerPage
from diabetes_service.transport.envelope import Envelope, request_id
from diabetes_service.transport.openapi import openapi_document
from diabetes_service.transport.webhook import MLflowWebhook

log = logging.getLogger("diabetes_service")


class ScoringApp:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.state = ServiceState(settings)
        self.envelope = Envelope(settings, self.state)
        self.lifecycle = ModelLifecycle(settings, self.state, served=self._served)
        self.docs = SwaggerPage(settings.service_name)
        self.max_body_bytes = settings.max_body_bytes
        # The first protocol answers for paths no protocol serves.
        self.protocols: list[Protocol] = [
            AzureMLProtocol(self.state, self._describe),
            MlflowProtocol(self.state),
            V2RestProtocol(self.state),
        ]
        for protocol in self.protocols:
            self.envelope.trace_steps(protocol)
        self.default_protocol = self.protocols[0]
        routes = [route for protocol in self.protocols for route in protocol.routes()]
        self.envelope.log_routes({r.path: r.protocol.name for r in routes if r.method == "POST"}, "http")
        if settings.private_docs:
            routes = [replace(r, public=False) if r.path == "/swagger.json" else r for r in routes]
        self.routes = [*routes, *self._own_routes()]
        self.router = Router(self.routes)
        self._identify(self.state.model_name, self.state.model_version)

    def _identify(self, name: str, version: str) -> None:
        self._identity_headers = [(b"x-model-name", name.encode()), (b"x-model-version", version.encode())]

    def _served(self, core: ScoringCore) -> None:
        """A model version is warm and now answers (the lifecycle's call, from its thread)."""
        self._identify(core.identity.name, core.identity.version)
        assert self.state.runner is not None  # set by mark_warm
        self.envelope.metrics.serving(
            core.identity.name, core.identity.version, self.state.runner.calls, core.identity.sha256
        )

    def _own_routes(self) -> list[Route]:
        owner = self.default_protocol  # its error body for these
        docs_public = not self.settings.private_docs
        routes = [
            Route(
                "GET",
                "/health/ready",
                self._readiness,
                owner,
                public=True,
                summary="Readiness",
                answer_description="Ready",
                errors=(503,),
            ),
            Route("GET", "/docs", self._docs_page, owner, public=docs_public, documented=False),
            *(Route("GET", path, self._asset, owner, public=docs_public, documented=False) for path in self.docs.paths),
        ]
        # With a metrics port the supervisor serves /metrics there, with no key; run alone (no
        # supervisor, no shared metrics folder) nothing would, so it stays here.
        if not self.settings.metrics_port or self.settings.metrics_dir is None:
            routes.append(Route("GET", "/metrics", self._metrics, owner, summary="Prometheus metrics"))
        secret = self.settings.webhook_secret
        if secret is not None:  # MLflow's registry webhook: not part of any scoring protocol's description
            hook = MLflowWebhook(secret.get_secret_value())
            routes += [
                Route(method, path, handler, owner, public=public, documented=False)  # type: ignore[arg-type]
                for method, path, handler, public in hook.routes()
            ]
        return routes

    def _describe(self, core: ScoringCore) -> bytes:
        """The API description of every documented route, for `core` (Azure ML's /swagger.json)."""
        import orjson

        document = openapi_document(
            self.routes,
            self.protocols,
            core,
            title=self.settings.service_name,
            auth_enabled=self.state.auth_enabled,
            rate_limited=self.envelope.limiter is not None,
        )
        return orjson.dumps(document)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not self.state.warm:  # a replacement worker loads before it listens
                    asyncio.get_running_loop().run_in_executor(None, self.lifecycle.load)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.state.draining = True
                self.envelope.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                self.envelope.end_tracing()
                return

    # -- requests ----------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        # Every request passes here: it is kept to one coroutine and plain calls, since on the
        # 1-row hot path this frame and the server's own costs outweigh the model's arithmetic.
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        headers = dict(scope["headers"])
        method, path = scope["method"], scope["path"]
        request = Request(method, path, headers, request_id(headers.get(b"x-request-id")))
        matched = self.router.match(method, path)
        if matched is None:
            route_label = "unmatched"
        else:
            route, params = matched
            # A templated route's label is the template: one metrics label per route, not per name.
            route_label = route.path if params else path
        envelope = self.envelope
        call = envelope.open(method, route_label, request.request_id, path, scope["headers"])
        protocol = self.default_protocol
        try:
            if matched is None:
                protocol = self.router.owner(path) or protocol
                raise self._no_route(request)
            protocol = route.protocol
            request.params = params
            post = method == "POST"
            slot = envelope.admit(route.public, headers.get(b"authorization"), post, scope.get("client"))
            try:
                if post:
                    request.body = await read_body(receive, headers.get(b"content-length"), self.max_body_bytes)
                response = await route.handler(request)
            finally:
                if slot:
                    envelope.release()
        except (HTTPError, ScoringError) as exc:
            response = protocol.error_response(exc)
        except (Unavailable, ScoringTimeout) as exc:  # not ready, too many in flight, timed out
            response = protocol.error_response(protocol.refusal(exc))
        except Exception:
            log.exception("unexpected error (request %s)", request.request_id)
            response = protocol.error_response(HTTPError(500, f"internal error; quote request id {request.request_id}"))

        body = response.body
        model = response.model
        if model is not None and envelope.rollout is not None:
            model = answered(model)  # the challenger's, where it computed the answer
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type),
                    (b"content-length", b"%d" % len(body)),
                    (b"x-request-id", request.request_id.encode()),
                    *(model.headers if model else self._identity_headers),
                    *response.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        envelope.close(call, response.status, response.rows, response.method, model, body)

    def _no_route(self, request: Request) -> HTTPError:
        allowed = self.router.allowed(request.path)
        if allowed:
            return HTTPError(
                405,
                f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}",
                headers=[(b"allow", ", ".join(allowed).encode())],
            )
        # A caller who guessed a path (POST /predict) learns where scoring and the route list are.
        return HTTPError(404, f"no route {request.path}: scoring is POST /score, every route is listed at /docs")

    async def _readiness(self, request: Request) -> Response:
        if self.state.ready:
            return text_response("Ready")
        reason = "draining" if self.state.draining else "loading"
        return Response(
            503,
            text_response(f"Not ready: {reason}").body,
            b"text/plain; charset=utf-8",
            list(RETRY_AFTER),
        )

    async def _metrics(self, request: Request) -> Response:
        metrics = self.envelope.metrics
        return Response(200, metrics.render(), metrics.content_type)

    async def _docs_page(self, request: Request) -> Response:
        return self.docs.page

    async def _asset(self, request: Request) -> Response:
        return self.docs.assets[request.path]
