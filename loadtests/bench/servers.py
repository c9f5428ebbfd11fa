"""The three servers compared: this service, `mlflow models serve`, and the constant-reply ceiling."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from loadtests.bench.data import azureml_body, mlflow_body, v2_binary_body_and_header, v2_body
from loadtests.bench.store import BIN, Store, clean_env

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Server:
    """How to start one server on a port, tell that it is ready, and score on it."""

    key: str  # "ours", "ours-invocations", "ours-nolog", "mlflow", "constant", "routed-ours"...
    label: str
    cmd: Callable[[int], list[str]]
    env: dict[str, str]
    ready_path: str
    score_path: str
    body: Callable[[list[list[float]]], bytes]
    # Whether the answer carries one prediction per row (the constant app's does not).
    predicts: bool = True
    # A line each worker logs once its model is warm. Its readiness route answers from whichever
    # worker takes the connection, so one warm worker says 200 while another still answers 503.
    worker_ready_line: str | None = None
    # More routes of the same process measured beside `score_path` (cells keyed and labelled as given).
    also: tuple[Route, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # sent with every scoring request besides Content-Type

    def routes(self) -> list[Route]:
        return [Route(self.key, self.label, self.score_path, self.body, self.headers), *self.also]


@dataclass(frozen=True)
class Route:
    """One scoring route of a server, with its own wire format."""

    key: str
    label: str
    score_path: str
    body: Callable[[list[list[float]]], bytes]
    headers: tuple[tuple[str, str], ...] = ()


def ours(store: Store, model_uri: str, workers: int, cache: Path, *, access_log: bool = True) -> Server:
    """`diabetes serve`, as shipped (access log on unless told otherwise)."""
    return Server(
        key="ours" if access_log else "ours-nolog",
        label="diabetes serve" if access_log else "diabetes serve, no access log",
        cmd=lambda port: [
            str(BIN / "diabetes"),
            "serve",
            "--model-uri",
            model_uri,
            "--port",
            str(port),
            "--workers",
            str(workers),
            # gRPC's default port is fixed (8081): off here, on a free port in the gRPC case (grpc_case.py).
            "--grpc-port",
            "0",
        ],
        env=clean_env(
            DIABETES_HOME=str(store.home),
            DIABETES_MODEL_CACHE=str(cache),
            DIABETES_ACCESS_LOG="true" if access_log else "false",
            # /metrics' own port's default is fixed too (8082): back on the scoring port here.
            DIABETES_METRICS_PORT="0",
        ),
        ready_path="/health/ready",
        score_path="/score",
        body=azureml_body,
        worker_ready_line=r"^model .* ready \(",
    )


def baseline(store: Store, model_uri: str, workers: int, cache: Path, source: Path) -> Server:
    """`diabetes serve` running another checkout's code (its `service`, `cli` and `client` folders first
    on PYTHONPATH, ahead of this checkout's editable install, so that a change that moves modules is
    compared whole): the peer for an A/B comparison of a change."""
    base = ours(store, model_uri, workers, cache)
    source = Path(source).resolve()
    path = os.pathsep.join(str(source / part) for part in ("service", "cli", "client"))
    return replace(
        base, key="baseline", label=f"diabetes serve, code of {source}", env={**base.env, "PYTHONPATH": path}
    )


def with_invocations(server: Server) -> Server:
    """`server` (ours) also scored on its MLflow route, with `mlflow models serve`'s body, cell by cell."""
    invocations = Route("ours-invocations", f"{server.label} /invocations", "/invocations", mlflow_body)
    return replace(server, also=(invocations,))


def with_v2(server: Server, model_name: str) -> Server:
    """`server` (ours) also scored over the Open Inference Protocol's REST route: JSON tensors (the body
    MLServer gets) and Triton's binary tensors (what tritonclient sends by default), cell by cell."""
    path = f"/v2/models/{model_name}/infer"
    json_route = Route("ours-v2", f"{server.label} V2 REST", path, v2_body)
    binary, header = v2_binary_body_and_header
    binary_route = Route("ours-v2-binary", f"{server.label} V2 REST binary", path, binary, header)
    return replace(server, also=(*server.also, json_route, binary_route))


def routed(folder: Path, workers: int) -> Server:
    """The scoring app on a local folder in the bench's own worker harness: our router on `/score`,
    Starlette's route matching on `/starlette/score`, both on the same processes."""
    return Server(
        key="routed-ours",
        label="app, own router",
        cmd=lambda port: [
            sys.executable,
            "-m",
            "loadtests.bench.routed_server",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--model",
            str(folder),
        ],
        env=clean_env(DIABETES_ACCESS_LOG="true"),
        ready_path="/health/ready",
        score_path="/score",
        body=azureml_body,
        worker_ready_line=r"^model .* ready \(",
        also=(Route("routed-starlette", "app, Starlette routing", "/starlette/score", azureml_body),),
    )


def pipeline(store: Store, model_path: Path, workers: int, cache: Path, *, gather: bool) -> Server:
    """`diabetes serve` on a scikit-learn pipeline (not compiled: scikit-learn runs on every call)."""
    base = ours(store, str(model_path), workers, cache)
    return replace(
        base,
        key="pipeline" if gather else "pipeline-alone",
        label="sklearn pipeline, gathered" if gather else "sklearn pipeline, one call each",
        # The bench pickled this pipeline itself: it trusts it.
        env={**base.env, "DIABETES_GATHER_REQUESTS": "true" if gather else "false", "DIABETES_ALLOW_PICKLE": "true"},
    )


def mlflow_serve(store: Store, workers: int) -> Server:
    """`mlflow models serve` on the same registered version, in this environment, same worker count."""
    return Server(
        key="mlflow",
        label="mlflow models serve",
        cmd=lambda port: [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            store.model_uri,
            "--env-manager",
            "local",
            "-w",
            str(workers),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        # MLflow 3.17 loads pickled models only when told that is acceptable.
        env=clean_env(MLFLOW_TRACKING_URI=store.tracking_uri, MLFLOW_ALLOW_PICKLE_DESERIALIZATION="true"),
        ready_path="/ping",
        score_path="/invocations",
        body=mlflow_body,
    )


def constant(workers: int) -> Server:
    """The constant-reply ASGI app on uvicorn + httptools + uvloop, workers laid out as ours: the ceiling."""
    return Server(
        key="constant",
        label="constant-reply ASGI app",
        cmd=lambda port: [
            sys.executable,
            "-m",
            "loadtests.bench.constant_server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=clean_env(),
        ready_path="/",
        score_path="/score",
        body=azureml_body,
        predicts=False,
    )
