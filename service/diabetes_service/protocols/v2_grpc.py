"""Open Inference Protocol (V2) over gRPC: `inference.GRPCInferenceService` over the shared data plane.

The messages and the service descriptor are the ones generated from the protocol's proto that
Triton's client package ships (`tritonclient.grpc.service_pb2`, package `inference`, a superset of
KServe's `grpc_predict_v2.proto`); nothing here is hand-written protobuf. This module turns those
messages into the data plane's `Tensor`s and back, and the data plane's errors into gRPC status
codes: INVALID_ARGUMENT for a caller mistake, NOT_FOUND for an unknown model or version,
UNAUTHENTICATED for a missing or wrong key, UNAVAILABLE while loading or draining.

Every worker runs one `grpc.aio` server on its own event loop (the one uvicorn runs on, uvloop),
bound with SO_REUSEPORT to the service's gRPC port, as its HTTP socket is (listeners.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from diabetes_service.core import TOO_MANY_ROWS, ScoringError
from diabetes_service.http import HTTPError
from diabetes_service.protocols.v2_dataplane import InferAnswer, ModelNotFound, ModelNotReady, Tensor, V2DataPlane
from diabetes_service.protocols.v2_tensors import DTYPES, dtype_of, element_count, from_raw, to_raw
from diabetes_service.runner import ScoringTimeout

if TYPE_CHECKING:
    from diabetes_service.app import ScoringApp

log = logging.getLogger("diabetes_service")

# Typed contents: which repeated field of InferTensorContents holds each datatype (FP16 has none:
# it travels as raw contents only, per the protocol).
CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
# Calls that answer without a key, as the HTTP probes do: a platform's health checks carry none.
PUBLIC = frozenset({"ServerLive", "ServerReady"})
# Metrics and the access log count gRPC calls by the HTTP status the REST side gives the same outcome,
# so that the dashboards' and alerts' error ratios (5xx) cover both transports.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.DEADLINE_EXCEEDED: 408,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
}
ROUTE = "grpc:inference.GRPCInferenceService/"


def _stubs() -> tuple[Any, Any]:
    # Imported where gRPC is served only: a worker with --grpc-port 0 never loads grpc's stubs.
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    return service_pb2, service_pb2_grpc


class CallError(Exception):
    """Ends one call with a gRPC status code and a message for the caller."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _located(exc: ScoringError) -> str:
    return f"{exc.field}: {exc.message}" if exc.field else exc.message


def status_of(exc: Exception) -> CallError:
    """The data plane's (and the app's) errors as gRPC status codes, with the same messages."""
    if isinstance(exc, CallError):
        return exc
    if isinstance(exc, ScoringError):
        code = grpc.StatusCode.RESOURCE_EXHAUSTED if exc.kind == TOO_MANY_ROWS else grpc.StatusCode.INVALID_ARGUMENT
        return CallError(code, _located(exc))
    if isinstance(exc, ModelNotFound):
        return CallError(grpc.StatusCode.NOT_FOUND, str(exc))
    if isinstance(exc, ModelNotReady):
        return CallError(grpc.StatusCode.UNAVAILABLE, str(exc))
    if isinstance(exc, ScoringTimeout):
        return CallError(grpc.StatusCode.DEADLINE_EXCEEDED, str(exc))
    if isinstance(exc, HTTPError):
        codes = {401: grpc.StatusCode.UNAUTHENTICATED, 503: grpc.StatusCode.UNAVAILABLE}
        return CallError(codes.get(exc.status, grpc.StatusCode.INVALID_ARGUMENT), exc.message)
    raise TypeError(type(exc).__name__)


# -- protobuf <-> tensors ----------------------------------------------------------------------


def decode_inputs(request: Any) -> list[Tensor]:
    """ModelInferRequest inputs, typed contents or raw_input_contents (all or none), to Tensors."""
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise ScoringError(
            f"holds {len(raw)} entries for {len(request.inputs)} inputs; send raw contents for every input or none",
            "raw_input_contents",
        )
    tensors = []
    for i, tensor in enumerate(request.inputs):
        field = f"inputs[{i}]"
        shape = list(tensor.shape)
        if raw:
            if tensor.HasField("contents"):
                raise ScoringError("has contents as well as raw_input_contents; send one or the other", field)
            data = from_raw(tensor.datatype, shape, raw[i], f"raw_input_contents[{i}]")
        else:
            data = _from_contents(tensor, shape, field)
        tensors.append(Tensor(tensor.name, tensor.datatype, shape, data))
    return tensors


def _from_contents(tensor: Any, shape: list[int], field: str) -> np.ndarray:
    dtype = dtype_of(tensor.datatype, f"{field}.datatype")
    count = element_count(shape, f"{field}.shape")
    name = CONTENTS_FIELD.get(tensor.datatype)
    if name is None:
        raise ScoringError(f"datatype {tensor.datatype} travels as raw_input_contents only", f"{field}.datatype")
    contents = tensor.contents
    stray = next((f.name for f, _ in contents.ListFields() if f.name != name), None)
    if stray is not None:
        raise ScoringError(f"datatype {tensor.datatype} goes in contents.{name}, not contents.{stray}", field)
    values = getattr(contents, name)
    if len(values) != count:
        raise ScoringError(f"holds {len(values)} elements; shape {shape} needs {count}", f"{field}.contents.{name}")
    if tensor.datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = [value.decode(errors="replace") for value in values]
    else:
        array = np.array(values, dtype=dtype)
        if dtype.kind in "iu" and count and not np.array_equal(array, np.array(values)):
            raise ScoringError(f"holds values out of {tensor.datatype}'s range", f"{field}.contents.{name}")
    return array.reshape(shape)


def encode_answer(pb: Any, answer: InferAnswer, raw: bool) -> Any:
    """An InferAnswer as ModelInferResponse: raw_output_contents when the caller sent raw inputs
    (what Triton's client does), typed contents otherwise."""
    response = pb.ModelInferResponse(
        model_name=answer.model.name, model_version=answer.model.version, id=answer.id or ""
    )
    for output in answer.outputs:
        tensor = response.outputs.add(name=output.name, datatype=output.datatype, shape=output.shape)
        if raw:
            response.raw_output_contents.append(to_raw(output.data))
        elif output.datatype == "BYTES":
            tensor.contents.bytes_contents.extend(
                value if isinstance(value, bytes) else str(value).encode() for value in output.data.ravel().tolist()
            )
        else:
            flat = np.asarray(output.data, dtype=DTYPES[output.datatype]).ravel()
            getattr(tensor.contents, CONTENTS_FIELD[output.datatype]).extend(flat.tolist())
    return response


# -- the servicer --------------------------------------------------------------------------------


class V2GrpcServicer:
    """The six calls of the protocol; the rest of Triton's service (repository, shared memory,
    statistics) answer UNIMPLEMENTED, as the generated base class does."""

    def __init__(self, app: ScoringApp) -> None:
        self.app = app
        self.plane = V2DataPlane(app.state)
        self.pb, grpc_module = _stubs()
        self.base = grpc_module.GRPCInferenceServiceServicer

    def register(self, server: grpc.aio.Server, grpc_module: Any) -> None:
        """The generated registration, with every call wrapped in keys, errors, metrics and the log."""
        servicer = self.base()
        for name in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"):
            setattr(servicer, name, self._wrap(name, getattr(self, name)))
        grpc_module.add_GRPCInferenceServiceServicer_to_server(servicer, server)

    def _wrap(self, name: str, call: Callable[[Any], Awaitable[tuple[Any, int, str]]]) -> Callable:
        app = self.app
        route = ROUTE + name
        public = name in PUBLIC

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = perf_counter()
            rows, method = 0, ""
            status = 200
            try:
                if not public:
                    app.keys.check(_metadata(context, "authorization"))
                response, rows, method = await call(request)
                return response
            except (CallError, ScoringError, ModelNotFound, ModelNotReady, ScoringTimeout, HTTPError) as exc:
                error = status_of(exc)
                status = HTTP_STATUS.get(error.code, 400)
                await context.abort(error.code, error.message)
            except Exception:
                status = 500
                request_id = getattr(request, "id", "") or "-"
                log.exception("unexpected error (gRPC %s, request %s)", name, request_id)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error; quote request id {request_id}")
            finally:
                elapsed = perf_counter() - started
                app.metrics.observe(route, status, elapsed)
                if rows:
                    app.metrics.count_predictions(method, rows)
                app.access_log.write(
                    getattr(request, "id", "") or "-", "GRPC", route, status, rows, elapsed, app.state.model_version
                )

        return handle

    async def ServerLive(self, request: Any) -> tuple[Any, int, str]:
        return self.pb.ServerLiveResponse(live=self.plane.live()), 0, ""

    async def ServerReady(self, request: Any) -> tuple[Any, int, str]:
        return self.pb.ServerReadyResponse(ready=self.plane.ready()), 0, ""

    async def ModelReady(self, request: Any) -> tuple[Any, int, str]:
        return self.pb.ModelReadyResponse(ready=self.plane.model_ready(request.name, request.version or None)), 0, ""

    async def ServerMetadata(self, request: Any) -> tuple[Any, int, str]:
        return self.pb.ServerMetadataResponse(**self.plane.server_metadata()), 0, ""

    async def ModelMetadata(self, request: Any) -> tuple[Any, int, str]:
        metadata = self.plane.model_metadata(request.name, request.version or None)
        # The proto's TensorMetadata has no parameters: the feature names stay with REST's metadata.
        strip = [{key: tensor[key] for key in ("name", "datatype", "shape")} for tensor in metadata["inputs"]]
        outputs = [{key: tensor[key] for key in ("name", "datatype", "shape")} for tensor in metadata["outputs"]]
        answer = self.pb.ModelMetadataResponse(
            name=metadata["name"], versions=metadata["versions"], platform=metadata["platform"]
        )
        for tensor in strip:
            answer.inputs.add(**tensor)
        for tensor in outputs:
            answer.outputs.add(**tensor)
        return answer, 0, ""

    async def ModelInfer(self, request: Any) -> tuple[Any, int, str]:
        app = self.app
        limited = app.concurrency_limit is not None
        if limited:
            app._take_slot()  # the same per-replica share as the HTTP routes
        try:
            answer = await self.plane.infer(
                request.model_name,
                request.model_version or None,
                decode_inputs(request),
                [output.name for output in request.outputs] or None,
                request.id or None,
            )
        finally:
            if limited:
                app.in_flight -= 1
        return encode_answer(self.pb, answer, raw=bool(request.raw_input_contents)), answer.rows, answer.method


def _metadata(context: grpc.aio.ServicerContext, key: str) -> bytes | None:
    for item in context.invocation_metadata() or ():
        if item.key == key:
            value = item.value
            return value if isinstance(value, bytes) else value.encode()
    return None


class GrpcTransport:
    """One worker's gRPC server: started on the worker's loop, stopped with a grace on SIGTERM."""

    def __init__(self, app: ScoringApp) -> None:
        self.app = app
        self.server: grpc.aio.Server | None = None
        self.stopping: Any = None

    async def start(self) -> None:
        settings = self.app.settings
        servicer = V2GrpcServicer(self.app)
        _, grpc_module = _stubs()
        self.server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 1),  # join the port's other workers (listeners.py)
                ("grpc.max_receive_message_length", settings.max_body_bytes),
                ("grpc.max_send_message_length", -1),
            ]
        )
        servicer.register(self.server, grpc_module)
        host = f"[{settings.host}]" if ":" in settings.host else settings.host
        self.server.add_insecure_port(f"{host}:{settings.grpc_port}")
        await self.server.start()

    def stop(self) -> Any:
        """Refuse new calls at once; let the ones in flight finish within the graceful timeout."""
        if self.server is not None and self.stopping is None:
            grace = self.app.settings.graceful_timeout_seconds or None
            self.stopping = asyncio.get_running_loop().create_task(self.server.stop(grace))
        return self.stopping
