"""Open Inference Protocol (V2) over gRPC: `inference.GRPCInferenceService` over the shared data plane.

The messages are the ones of the protocol's proto as Triton's client package publishes it
(v2/grpc_schema.py; package `inference`, a superset of KServe's `grpc_predict_v2.proto`); nothing
here is hand-written protobuf. This module turns those messages into the data plane's `Tensor`s and
back, and the data plane's errors into gRPC status codes: INVALID_ARGUMENT for a caller mistake,
NOT_FOUND for an unknown model or version, UNAUTHENTICATED for a missing or wrong key, UNAVAILABLE
while loading or draining, RESOURCE_EXHAUSTED for a message over the body limit, and past
`--rate-limit` (with `retry-after` seconds in the trailing metadata; counted as 429).

The transport is grpclib (pure Python, HTTP/2 by h2) rather than grpcio: grpcio's C core is 18 MB
installed and would take the image past its 350 MB budget (measured: 346 MB without gRPC, ~366 MB
with grpcio and protobuf); grpclib with h2, multidict and protobuf adds ~4 MB. Every worker runs one
grpclib server on its own event loop (the one uvicorn runs on, uvloop), bound with SO_REUSEPORT to
the service's gRPC port, as its HTTP socket is (listeners.py).
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

import numpy as np
from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Server

from diabetes_service.protocols.http import HTTPError
from diabetes_service.protocols.v2.dataplane import InferAnswer, ModelNotFound, ModelNotReady, Tensor, V2DataPlane
from diabetes_service.protocols.v2.grpc_schema import SERVICE, messages
from diabetes_service.protocols.v2.tensors import DTYPES, dtype_of, element_count, from_raw, to_raw
from diabetes_service.scoring.core import TOO_MANY_ROWS, ScoringError
from diabetes_service.scoring.runner import ScoringTimeout

if TYPE_CHECKING:
    from diabetes_service.transport.app import ScoringApp

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
    Status.INVALID_ARGUMENT: 400,
    Status.UNAUTHENTICATED: 401,
    Status.NOT_FOUND: 404,
    Status.DEADLINE_EXCEEDED: 408,
    Status.RESOURCE_EXHAUSTED: 413,
    Status.INTERNAL: 500,
    Status.UNAVAILABLE: 503,
}
# The calls this service answers; the rest of Triton's service (repository, shared memory,
# statistics) are not routed, and grpclib answers them UNIMPLEMENTED.
CALLS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
ROUTE = "grpc:inference.GRPCInferenceService/"


class CallError(Exception):
    """Ends one call with a gRPC status code and a message for the caller."""

    def __init__(self, code: Status, message: str) -> None:
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
        code = Status.RESOURCE_EXHAUSTED if exc.kind == TOO_MANY_ROWS else Status.INVALID_ARGUMENT
        return CallError(code, _located(exc))
    if isinstance(exc, ModelNotFound):
        return CallError(Status.NOT_FOUND, str(exc))
    if isinstance(exc, ModelNotReady):
        return CallError(Status.UNAVAILABLE, str(exc))
    if isinstance(exc, ScoringTimeout):
        return CallError(Status.DEADLINE_EXCEEDED, str(exc))
    if isinstance(exc, HTTPError):
        codes = {401: Status.UNAUTHENTICATED, 429: Status.RESOURCE_EXHAUSTED, 503: Status.UNAVAILABLE}
        return CallError(codes.get(exc.status, Status.INVALID_ARGUMENT), exc.message)
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
        for key, value in output.parameters.items():  # e.g. predict_proba's classes, as over REST
            _set_parameter(tensor.parameters[key], value)
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


def _set_parameter(parameter: Any, value: Any) -> None:
    """An InferParameter's one field for `value`: bool, int64, double or string."""
    if isinstance(value, bool):
        parameter.bool_param = value
    elif isinstance(value, int):
        parameter.int64_param = value
    elif isinstance(value, float):
        parameter.double_param = value
    else:
        parameter.string_param = str(value)


# -- the servicer --------------------------------------------------------------------------------


class V2GrpcServicer:
    """The six calls of the protocol, each wrapped in keys, errors, metrics and the access log."""

    def __init__(self, app: ScoringApp) -> None:
        self.app = app
        self.plane = V2DataPlane(app.state)
        self.pb, self.service = messages()
        self.in_flight = 0
        self.draining = False
        self.idle = asyncio.Event()
        self.idle.set()

    def __mapping__(self) -> dict[str, Handler]:
        """grpclib's routing table: `/inference.GRPCInferenceService/<call>` to a unary handler."""
        routes = {}
        for name in CALLS:
            method = self.service.methods_by_name[name]
            request = getattr(self.pb, method.input_type.name)
            reply = getattr(self.pb, method.output_type.name)
            handle = self._wrap(name, getattr(self, name), request)
            routes[f"/{SERVICE}/{name}"] = Handler(handle, Cardinality.UNARY_UNARY, request, reply)
        return routes

    def _wrap(self, name: str, call: Callable[[Any], Awaitable[tuple[Any, int, str]]], request_type: Any) -> Callable:
        app = self.app
        route = ROUTE + name
        public = name in PUBLIC
        limit = app.settings.max_body_bytes

        async def handle(stream: Any) -> None:
            started = perf_counter()
            rows, method = 0, ""
            status = 200
            request = None
            self.in_flight += 1
            self.idle.clear()
            try:
                if self.draining:
                    raise CallError(Status.UNAVAILABLE, "the service is shutting down; call another replica")
                if not public:
                    key = app.keys.check(_metadata(stream, "authorization"))
                    if app.limiter is not None:
                        app.limiter.admit(key, None if key is not None else stream.peer.addr())
                request = await _receive(stream, request_type, limit)
                response, rows, method = await call(request)
                await stream.send_message(response)
            except (CallError, ScoringError, ModelNotFound, ModelNotReady, ScoringTimeout, HTTPError) as exc:
                error = status_of(exc)
                status = HTTP_STATUS.get(error.code, 400)
                if isinstance(exc, HTTPError) and exc.status == 429:  # the rate limit: its Retry-After as metadata
                    status = 429
                    retry = [(name.decode(), value.decode()) for name, value in exc.headers]
                    await stream.send_trailing_metadata(status=error.code, status_message=error.message, metadata=retry)
                    return
                raise GRPCError(error.code, error.message) from None
            except GRPCError:
                raise
            except Exception:
                status = 500
                request_id = getattr(request, "id", "") or "-"
                log.exception("unexpected error (gRPC %s, request %s)", name, request_id)
                raise GRPCError(Status.INTERNAL, f"internal error; quote request id {request_id}") from None
            finally:
                self.in_flight -= 1
                if not self.in_flight:
                    self.idle.set()
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


async def _receive(stream: Any, request_type: Any, limit: int) -> Any:
    """The call's one message, refused before it is read when its length prefix is over `limit`.

    grpclib reads a message whole, whatever its declared length: the 5-byte gRPC prefix (a
    compression flag, then the length) is read here first, from grpclib's HTTP/2 stream, so that a
    caller cannot make a worker buffer more than the HTTP side's body limit."""
    prefix = await stream._stream.recv_data(5)
    if len(prefix) < 5:
        raise CallError(Status.INVALID_ARGUMENT, "the call carries no request message")
    compressed, length = struct.unpack(">?I", prefix)
    if compressed:
        raise CallError(Status.UNIMPLEMENTED, "compressed messages are not supported; send them uncompressed")
    if length > limit:
        raise CallError(Status.RESOURCE_EXHAUSTED, f"the message is {length} bytes; the limit is {limit}")
    data = await stream._stream.recv_data(length)
    try:
        return request_type.FromString(data)
    except Exception:  # protobuf's DecodeError, whatever module it comes from
        raise CallError(Status.INVALID_ARGUMENT, f"the message is not a valid {request_type.DESCRIPTOR.name}") from None


def _metadata(stream: Any, key: str) -> bytes | None:
    value = stream.metadata.get(key) if stream.metadata else None
    if value is None:
        return None
    return value if isinstance(value, bytes) else value.encode()


class GrpcTransport:
    """One worker's gRPC server: started on the worker's loop, drained and stopped on SIGTERM."""

    def __init__(self, app: ScoringApp) -> None:
        self.app = app
        self.servicer: V2GrpcServicer | None = None
        self.server: Server | None = None
        self.stopping: Any = None

    async def start(self) -> None:
        settings = self.app.settings
        self.servicer = V2GrpcServicer(self.app)
        self.server = Server([self.servicer])
        # reuse_port: join the port's other workers and the supervisor's anchor (listeners.py).
        await self.server.start(settings.host, settings.grpc_port, reuse_port=True)

    def stop(self) -> Any:
        """Refuse new calls at once (UNAVAILABLE, which gRPC clients may retry on another replica);
        let the ones in flight finish within the graceful timeout; then close."""
        if self.server is not None and self.stopping is None:
            self.servicer.draining = True
            self.stopping = asyncio.get_running_loop().create_task(self._drain())
        return self.stopping

    async def _drain(self) -> None:
        grace = self.app.settings.graceful_timeout_seconds or None
        try:
            await asyncio.wait_for(self.servicer.idle.wait(), grace)
        except TimeoutError:
            log.warning("gRPC: %d call(s) still running after the graceful timeout", self.servicer.in_flight)
        self.server.close()  # cancels whatever still runs
        await self.server.wait_closed()
