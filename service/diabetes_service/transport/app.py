"""The ASGI application: routing, keys, request ids, metrics and the access log around every route.

Protocol adapters (`protocols/`) contribute routes, each with its own error body; this module only
wires them together, and builds the API description from the same routes. The model is loaded in
a background thread at start-up so that the liveness probe answers at once and readiness turns
200 only once the model is loaded and warm.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from random import getrandbits
from time import perf_counter

from diabetes_service import board
from diabetes_service.errors import EXIT_MODEL_LOAD_FAILED, ModelLoadError
from diabetes_service.model.loading import load_compiled, load_model
from diabetes_service.model.pyfunc import read_pyfunc
from diabetes_service.model.resolution import ResolvedModel, await_announcement
from diabetes_service.model.trust import TrustPolicy
from diabetes_service.observability import tracing
from diabetes_service.observability.accesslog import AccessLog
from diabetes_service.observability.metrics import Metrics
from diabetes_service.protocols.azureml import AzureMLProtocol
from diabetes_service.protocols.base import Protocol, Route, Router
from diabetes_service.protocols.http import HTTPError, Request, Response, read_body, text_response
from diabetes_service.protocols.mlflow import MlflowProtocol
from diabetes_service.protocols.v2.rest import V2RestProtocol
from diabetes_service.scoring.core import ModelIdentity, ScoringCore, ScoringError
from diabetes_service.scoring.runner import ScoringTimeout
from diabetes_service.scoring.state import NOT_READY_HEADERS, ServiceState
from diabetes_service.settings import ServiceSettings
from diabetes_service.transport.auth import KeyChecker
from diabetes_service.transport.docs import SwaggerPage
from diabetes_service.transport.openapi import openapi_document
from diabetes_service.transport.webhook import MLflowWebhook

log = logging.getLogger("diabetes_service")

MAX_REQUEST_ID = 200


class ScoringApp:
    def __init__(self, settings: ServiceSettings) -> None:
        self.settings = settings
        self.state = ServiceState(settings)
        self.keys = KeyChecker(key.get_secret_value() for key in settings.api_keys)
        self.metrics = Metrics(settings.metrics_dir)
        self.access_log = AccessLog(settings.access_log)
        self.docs = SwaggerPage(settings.service_name)
        self.in_flight = 0
        self.max_body_bytes = settings.max_body_bytes
        limit = settings.max_concurrent_requests
        # The limit is per replica: each of the replica's workers takes its share, rounded up.
        self.concurrency_limit = None if limit is None else -(-limit // max(1, settings.workers or 1))
        self.generation = 0  # of the model this worker serves (board.py)
        self.swapping = False
        self.on_warm: Callable[[], None] | None = None  # called once, from the load thread, when first warm
        # The first protocol answers for paths no protocol serves.
        self.protocols: list[Protocol] = [
            AzureMLProtocol(self.state, self._describe),
            MlflowProtocol(self.state),
            V2RestProtocol(self.state),
        ]
        self.default_protocol = self.protocols[0]
        routes = [route for protocol in self.protocols for route in protocol.routes()]
        if settings.private_docs:
            routes = [replace(r, public=False) if r.path == "/swagger.json" else r for r in routes]
        self.routes = [*routes, *self._own_routes()]
        self.router = Router(self.routes)
        self._identify(self.state.model_name, self.state.model_version)
        tracing.instrument(self, settings.service_name)  # OTEL_* unset: nothing at all changes

    def _identify(self, name: str, version: str) -> None:
        self.state.model_name, self.state.model_version = name, version
        self._identity_headers = [(b"x-model-name", name.encode()), (b"x-model-version", version.encode())]

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
            Route("GET", "/metrics", self._metrics, owner, summary="Prometheus metrics"),
            Route("GET", "/docs", self._docs_page, owner, public=docs_public, documented=False),
            *(Route("GET", path, self._asset, owner, public=docs_public, documented=False) for path in self.docs.paths),
        ]
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
        )
        return orjson.dumps(document)

    # -- start-up ----------------------------------------------------------------------------

    def load(self) -> None:
        """Load, warm up, then report ready. Runs in a thread; exits the worker on failure."""
        settings = self.settings
        prepared = ResolvedModel(
            settings.model_path or settings.model_uri, self.state.model_name, self.state.model_version
        )
        if settings.prepared_file:  # forked before the model was prepared: wait for the supervisor
            prepared = await_announcement(Path(settings.prepared_file), give_up=lambda: self.state.draining)
            if prepared is None:
                return
            self.generation = prepared.generation
        try:
            core = self._warm_core(prepared)
        except ModelLoadError as exc:
            self._fail(str(exc))
        except Exception as exc:  # the model's own code failed while warming up
            self._fail(f"the model failed its warm-up prediction: {type(exc).__name__}: {exc}")
        # Everything loaded so far (libraries, the model) lives as long as the worker: frozen out of
        # the collector's reach, so that a full collection under load, with requests' rows alive,
        # need not walk scikit-learn's and SciPy's objects too (~50 ms pauses otherwise).
        gc.freeze()
        self._serve(core)

    def _warm_core(self, prepared: ResolvedModel) -> ScoringCore:
        if prepared.compiled:
            loaded = load_compiled(prepared.compiled)
        else:
            loaded = load_model(prepared.path, TrustPolicy.from_settings(self.settings))
        identity = ModelIdentity(prepared.name, prepared.version, prepared.sha256 or loaded.sha256)
        pyfunc = read_pyfunc(prepared.path, recorded=loaded.predict_fn)
        core = ScoringCore(loaded, identity, max_rows=self.settings.max_rows, pyfunc=pyfunc)
        core.warm_up()
        return core

    def _serve(self, core: ScoringCore) -> None:
        self._identify(core.identity.name, core.identity.version)
        self.state.mark_warm(core)
        assert self.state.runner is not None  # set by mark_warm
        self.metrics.serving(
            self.state.model_name, self.state.model_version, self.state.runner.calls, core.identity.sha256
        )
        log.info("model %s version %s ready (%s)", self.state.model_name, self.state.model_version, core.model_class)
        if self.on_warm is not None:  # the first time only: what waited for the model (worker.py's gRPC)
            on_warm, self.on_warm = self.on_warm, None
            on_warm()

    def follow_generation(self) -> None:
        """On the event loop, each tick: swap in the version the supervisor announced, if it is new."""
        if board.current is None or self.swapping or not self.state.warm:
            return
        generation = board.current[0].generation()
        if generation == self.generation:
            return
        self.swapping = True
        task = asyncio.get_running_loop().run_in_executor(None, self._load_announced)
        task.add_done_callback(lambda done: self._swap(done, generation))

    def _load_announced(self) -> tuple[int, ScoringCore]:
        prepared = await_announcement(Path(self.settings.prepared_file or ""), give_up=lambda: True)
        if prepared is None:
            raise ModelLoadError("no model announced")
        return prepared.generation, self._warm_core(prepared)

    def _swap(self, done: asyncio.Future, generation: int) -> None:
        # On the loop, between requests: requests already running keep the core they started with.
        self.swapping = False
        if done.exception() is not None:
            self.generation = generation  # not retried: the supervisor announces the next version
            log.error("could not swap in the announced model: %s", done.exception())
            return
        self.generation, core = done.result()
        gc.unfreeze()  # the old model may be collected once no request holds it
        self._serve(core)
        gc.collect()
        gc.freeze()

    def _fail(self, reason: str) -> None:
        print(f"diabetes serve: cannot serve the model: {reason}", file=sys.stderr, flush=True)
        os._exit(EXIT_MODEL_LOAD_FAILED)

    async def _lifespan(self, receive: Callable, send: Callable) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if not self.state.warm:  # a replacement worker loads before it listens
                    asyncio.get_running_loop().run_in_executor(None, self.load)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.state.draining = True
                self.access_log.flush()
                self.metrics.save()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests ----------------------------------------------------------------------------

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        # Every request passes here: it is kept to one coroutine and plain lookups, since on the
        # 1-row hot path this frame and the server's own costs outweigh the model's arithmetic.
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self._lifespan(receive, send)
            return
        started = perf_counter()
        headers = dict(scope["headers"])
        request_id = _request_id(headers.get(b"x-request-id"))
        request = Request(scope["method"], scope["path"], headers, request_id)
        route_label = request.path
        protocol = self.default_protocol
        try:
            matched = self.router.match(request.method, request.path)
            if matched is None:
                route_label = "unmatched"
                protocol = self.router.owner(request.path) or protocol
                raise self._no_route(request)
            route, params = matched
            protocol = route.protocol
            if params:
                request.params = params
                route_label = route.path  # the template: one metrics label per route, not per name
            if not route.public:
                self.keys.check(headers.get(b"authorization"))
            if request.method == "POST":
                limited = self.concurrency_limit is not None
                if limited:
                    self._take_slot()
                try:
                    request.body = await read_body(receive, headers.get(b"content-length"), self.max_body_bytes)
                    response = await route.handler(request)
                finally:
                    if limited:
                        self.in_flight -= 1
            else:
                response = await route.handler(request)
        except (HTTPError, ScoringError) as exc:
            response = protocol.error_response(exc)
        except ScoringTimeout as exc:
            # 408, as Azure ML endpoints answer past their request timeout: clients do not retry it
            # as they would a gateway's 504.
            response = protocol.error_response(HTTPError(408, str(exc)))
        except Exception:
            log.exception("unexpected error (request %s)", request_id)
            response = protocol.error_response(HTTPError(500, f"internal error; quote request id {request_id}"))

        body = response.body
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [
                    (b"content-type", response.content_type),
                    (b"content-length", b"%d" % len(body)),
                    (b"x-request-id", request_id.encode()),
                    *(response.model.headers if response.model else self._identity_headers),
                    *response.headers,
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

        elapsed = perf_counter() - started
        self.metrics.observe(route_label, response.status, elapsed)
        if response.rows:
            self.metrics.count_predictions(response.method, response.rows)  # type: ignore[arg-type]
        self.access_log.write(
            request_id, request.method, route_label, response.status, response.rows, elapsed, self.state.model_version
        )

    def _take_slot(self) -> None:
        """Count a scoring call in, within the spec's per-replica concurrency share of this worker."""
        if self.in_flight >= self.concurrency_limit:  # type: ignore[operator]
            raise HTTPError(503, "too many requests in flight; retry shortly", headers=list(NOT_READY_HEADERS))
        self.in_flight += 1

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
            list(NOT_READY_HEADERS),
        )

    async def _metrics(self, request: Request) -> Response:
        return Response(200, self.metrics.render(), self.metrics.content_type)

    async def _docs_page(self, request: Request) -> Response:
        return self.docs.page

    async def _asset(self, request: Request) -> Response:
        return self.docs.assets[request.path]


def _request_id(sent: bytes | None) -> str:
    if sent and len(sent) <= MAX_REQUEST_ID and sent.isascii() and sent.decode().isprintable():
        return sent.decode()
    # An id need only be unique, not secret: the process's PRNG (reseeded in every forked worker)
    # spares a system call per request.
    return f"{getrandbits(128):032x}"


def create_app(settings: ServiceSettings | None = None) -> ScoringApp:
    """The app for `settings`, or, run alone (`uvicorn --factory`), for the environment's settings."""
    return ScoringApp(settings or ServiceSettings())
