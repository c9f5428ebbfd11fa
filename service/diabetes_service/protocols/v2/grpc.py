"""Open Inference Protocol (V2) over gRPC: `inference.GRPCInferenceService`'s calls over the shared data plane.

The messages are the ones of the protocol's proto as Triton's client package publishes it
(v2/grpc_schema.py; package `inference`, a superset of KServe's `grpc_predict_v2.proto`); nothing
here is hand-written protobuf. This module turns those messages into the data plane's `Tensor`s and
back, and the data plane's (and the envelope's) errors into gRPC status codes: INVALID_ARGUMENT for
a caller mistake, NOT_FOUND for an unknown model or version, UNAUTHENTICATED for a missing or wrong
key, UNAVAILABLE while loading or draining or with too many calls in flight, DEADLINE_EXCEEDED past
the scoring timeout, RESOURCE_EXHAUSTED for a message over the body limit, and past `--rate-limit`
(with `retry-after` seconds in the trailing metadata; counted as 429). The server that answers
them, each call in the request envelope, is transport/grpc_server.py.
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
from grpclib.const import Status

from diabetes_service.protocols.http import HTTPError
from diabetes_service.protocols.v2.dataplane import InferAnswer, ModelNotFound, Tensor, V2DataPlane
from diabetes_service.protocols.v2.grpc_schema import messages
from diabetes_service.protocols.v2.tensors import DTYPES, dtype_of, element_count, from_raw, to_raw
from diabetes_service.scoring.core import TOO_MANY_ROWS, ModelIdentity, ScoringError
from diabetes_service.scoring.errors import ScoringTimeout, Unavailable
from diabetes_service.scoring.state import ServiceState

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
SCORING = frozenset({"ModelInfer"})  # the calls that take a concurrency slot, as REST's POST routes do
ROUTE = "grpc:inference.GRPCInferenceService/"
# What a call answers: the reply, the rows it scored and their method, and the model that scored them.
Answered = tuple[Any, int, str, ModelIdentity | None]


class CallError(Exception):
    """Ends one call with a gRPC status code and a message for the caller."""

    def __init__(self, code: Status, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _located(exc: ScoringError) -> str:
    return f"{exc.field}: {exc.message}" if exc.field else exc.message


# What a call may end with besides its answer: the caller's mistakes and the service's refusals.
REFUSALS = (CallError, ScoringError, ModelNotFound, Unavailable, ScoringTimeout, HTTPError)


def status_of(exc: Exception) -> CallError:
    """The data plane's (and the envelope's) errors, REFUSALS, as gRPC status codes, with the same messages."""
    if isinstance(exc, CallError):
        return exc
    if isinstance(exc, ScoringError):
        code = Status.RESOURCE_EXHAUSTED if exc.kind == TOO_MANY_ROWS else Status.INVALID_ARGUMENT
        return CallError(code, _located(exc))
    if isinstance(exc, ModelNotFound):
        return CallError(Status.NOT_FOUND, str(exc))
    if isinstance(exc, Unavailable):  # not ready, too many in flight
        return CallError(Status.UNAVAILABLE, exc.message)
    if isinstance(exc, ScoringTimeout):
        return CallError(Status.DEADLINE_EXCEEDED, str(exc))
    if isinstance(exc, HTTPError):  # the key's check, the rate limit
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
    """The six calls of the protocol over the data plane; the server wraps each in the envelope."""

    # Its parse step, wrapped in a span when tracing is on (as a protocol's `parse_steps` are).
    parse_steps = ("decode",)

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.plane = V2DataPlane(state)
        self.pb, self.service = messages()
        self.decode = decode_inputs

    def calls(self) -> dict[str, tuple[Callable[[Any], Awaitable[Answered]], Any, Any]]:
        """Each call by name: its coroutine, its request message type and its reply's."""
        routes = {}
        for name in CALLS:
            method = self.service.methods_by_name[name]
            request = getattr(self.pb, method.input_type.name)
            reply = getattr(self.pb, method.output_type.name)
            routes[name] = (getattr(self, name), request, reply)
        return routes

    async def ServerLive(self, request: Any) -> Answered:
        return self.pb.ServerLiveResponse(live=self.plane.live()), 0, "", None

    async def ServerReady(self, request: Any) -> Answered:
        return self.pb.ServerReadyResponse(ready=self.plane.ready()), 0, "", None

    async def ModelReady(self, request: Any) -> Answered:
        ready = self.plane.model_ready(request.name, request.version or None)
        return self.pb.ModelReadyResponse(ready=ready), 0, "", None

    async def ServerMetadata(self, request: Any) -> Answered:
        return self.pb.ServerMetadataResponse(**self.plane.server_metadata()), 0, "", None

    async def ModelMetadata(self, request: Any) -> Answered:
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
        return answer, 0, "", None

    async def ModelInfer(self, request: Any) -> Answered:
        answer = await self.plane.infer(
            request.model_name,
            request.model_version or None,
            self.decode(request),
            [output.name for output in request.outputs] or None,
            request.id or None,
        )
        reply = encode_answer(self.pb, answer, raw=bool(request.raw_input_contents))
        return reply, answer.rows, answer.method, answer.model


async def receive_message(stream: Any, request_type: Any, limit: int) -> Any:
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


def metadata_value(stream: Any, key: str) -> bytes | None:
    value = stream.metadata.get(key) if stream.metadata else None
    if value is None:
        return None
    return value if isinstance(value, bytes) else value.encode()
