"""The Open Inference Protocol (KServe V2) over REST, with Triton's binary tensor extension.

Routes: `GET /v2` (server metadata), `/v2/health/live`, `/v2/health/ready`,
`/v2/models/{name}[/versions/{version}]` (model metadata), `.../ready`, and `POST .../infer`.
`{name}` is the registered model name (as in `x-model-name`), `{version}` its registered version.
Everything but the wire form is the shared data plane's (v2/dataplane.py). Errors: `{"error": ...}`,
400 for a caller mistake, 404 for an unknown model or version, 413, 415, 503 as elsewhere.

Triton's binary extension: a request whose `Inference-Header-Content-Length` header is set holds
that many bytes of JSON, then the raw bytes of every input whose parameters give `binary_data_size`,
in order. An output asked for with `binary_data: true` (or all outputs, with the request parameter
`binary_data_output: true`, what `tritonclient` sends when it names no output) comes back the same
way: the answer's JSON says `binary_data_size` and its bytes follow the JSON, whose length the
answer's `Inference-Header-Content-Length` header gives.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Any, Literal, NotRequired, Union

import numpy as np
import orjson
from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
)
from typing_extensions import TypedDict

from diabetes_client.schema_errors import describe
from diabetes_service.protocols.base import Body, Protocol, Route, message_of, ref
from diabetes_service.protocols.http import RETRY_AFTER, HTTPError, Request, Response, encode_json
from diabetes_service.protocols.openapi_models import FeatureModels
from diabetes_service.protocols.v2.columns import accepted
from diabetes_service.protocols.v2.dataplane import ModelNotFound, Tensor, V2DataPlane
from diabetes_service.protocols.v2.tensors import DTYPES, from_json, from_raw, json_data, to_raw
from diabetes_service.scoring.core import INVALID, TOO_MANY_ROWS, ScoringCore, ScoringError
from diabetes_service.scoring.errors import NotReady, ScoringTimeout, Unavailable
from diabetes_service.scoring.state import ServiceState

HEADER_LENGTH = b"inference-header-content-length"
BINARY_EXTENSION = "binary_tensor_data"
OCTET_STREAM = b"application/octet-stream"
ACCEPTED_TYPES = ("", "application/json", "application/octet-stream")

ParameterValue = StrictStr | StrictBool | StrictInt | StrictFloat

# The wire models below are built on their first use (`defer_build`), as diabetes_client.schema's are:
# a worker does not build V2's validators before its first answer, whatever protocol that is.


class Parameters(BaseModel):
    """Key/value parameters: strings, numbers or booleans."""

    model_config = ConfigDict(extra="allow", defer_build=True)
    __pydantic_extra__: dict[str, ParameterValue] = Field(init=False)  # type: ignore[assignment]


class InferenceParameters(Parameters):
    """Request parameters; `binary_data_output: true` asks for every output in Triton's binary form."""

    binary_data_output: StrictBool | None = None


class TensorParameters(Parameters):
    """Tensor parameters; `binary_data_size`: the input's bytes follow the JSON (Triton's binary extension)."""

    binary_data_size: Annotated[StrictInt, Field(ge=0)] | None = None


class OutputParameters(Parameters):
    """`binary_data: true`: this output in Triton's binary form."""

    binary_data: StrictBool | None = None


class RequestInput(BaseModel):
    model_config = ConfigDict(strict=True, defer_build=True)

    name: str
    shape: list[Annotated[int, Field(ge=0)]]
    datatype: Literal[tuple(DTYPES)]  # type: ignore[valid-type]
    parameters: TensorParameters | None = None
    data: list[Any] | None = Field(default=None, description="Row-major elements, flat or nested.")


class RequestOutput(BaseModel):
    model_config = ConfigDict(strict=True, defer_build=True)

    name: str
    parameters: OutputParameters | None = None


class InferenceRequest(BaseModel):
    """Body of `POST /v2/models/{name}[/versions/{version}]/infer` (the JSON part, with the binary extension)."""

    model_config = ConfigDict(strict=True, defer_build=True)

    id: str | None = None
    parameters: InferenceParameters | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, ParameterValue] | None = None
    data: list[Any] | None = Field(default=None, description="Flat, row-major; absent when sent as binary.")


class InferenceResponse(BaseModel):
    """Answer of an inference request."""

    model_config = ConfigDict(defer_build=True)

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, ParameterValue] | None = None
    outputs: list[ResponseOutput]


class MetadataTensor(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, ParameterValue] | None = None


class MetadataModelResponse(BaseModel):
    """A model's metadata: its input (the feature names in its parameters) and its outputs, one per method."""

    model_config = ConfigDict(defer_build=True)

    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class MetadataServerResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str
    version: str
    extensions: list[str]


class LiveResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)

    live: bool


class ReadyResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)

    ready: bool


class ModelReadyResponse(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str
    ready: bool


class V2Error(BaseModel):
    """Body of every V2 error."""

    model_config = ConfigDict(defer_build=True)

    error: str


class V2RestProtocol(Protocol):
    name = "v2"
    error_model = V2Error
    prefix = "/v2"  # the spec: anything else under /v2 is a 404 {"error": ...}
    statuses = {INVALID: 400, TOO_MANY_ROWS: 413}  # noqa: RUF012 - read-only class table
    parse_steps = ("decode",)

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.plane = V2DataPlane(state, extensions=(BINARY_EXTENSION,))
        self.decode = _decode

    def routes(self) -> list[Route]:
        model, version = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
        infer = {
            "summary": "Inference (Open Inference Protocol V2)",
            "request": {"application/json": Body(ref("InferenceRequest"), example=_example)},
            "answer": {
                "application/json": Body(ref("InferenceResponse")),
                # Triton's binary extension: the JSON, then the outputs' bytes.
                "application/octet-stream": Body({"type": "string", "format": "binary"}),
            },
            "answer_description": "The outputs asked for (none asked: predict)",
            "errors": (400, 404, 408, 413, 415, 503),
        }
        metadata = {
            "summary": "Model metadata",
            "answer": {"application/json": Body(ref("MetadataModelResponse"))},
            "errors": (404, 503),
        }
        ready = {
            "summary": "Model ready",
            "answer": {"application/json": Body(ref("ModelReadyResponse"))},
            "answer_description": "Ready for inference",
            "errors": (404, 503),
        }
        return [
            # The infer routes first: templated routes are matched in order.
            Route("POST", f"{model}/infer", self.infer, self, **infer),  # type: ignore[arg-type]
            Route("POST", f"{version}/infer", self.infer, self, **infer),  # type: ignore[arg-type]
            Route(
                "GET",
                "/v2",
                self.server_metadata,
                self,
                summary="Server metadata",
                answer={"application/json": Body(ref("MetadataServerResponse"))},
            ),
            Route("GET", "/v2/", self.server_metadata, self, documented=False),
            Route(
                "GET",
                "/v2/health/live",
                self.live,
                self,
                public=True,
                summary="Server live",
                answer={"application/json": Body(ref("LiveResponse"))},
            ),
            Route(
                "GET",
                "/v2/health/ready",
                self.ready,
                self,
                public=True,
                summary="Server ready",
                answer={"application/json": Body(ref("ReadyResponse"))},
                errors=(503,),
            ),
            Route("GET", model, self.model_metadata, self, **metadata),  # type: ignore[arg-type]
            Route("GET", version, self.model_metadata, self, **metadata),  # type: ignore[arg-type]
            Route("GET", f"{model}/ready", self.model_ready, self, **ready),  # type: ignore[arg-type]
            Route("GET", f"{version}/ready", self.model_ready, self, **ready),  # type: ignore[arg-type]
        ]

    def error_response(self, error: HTTPError | ScoringError) -> Response:
        if isinstance(error, ScoringError):
            return Response(self.status_of(error), orjson.dumps({"error": message_of(error)}))
        message = f"{error.field}: {error.message}" if error.field else error.message
        return Response(error.status, orjson.dumps({"error": message}), headers=list(error.headers))

    def refusal(self, error: Unavailable | ScoringTimeout) -> HTTPError:
        """Not ready in the words of the V2 readiness routes; the rest as every protocol has them."""
        return _not_ready() if isinstance(error, NotReady) else super().refusal(error)

    # -- health and metadata -------------------------------------------------------------------

    async def live(self, request: Request) -> Response:
        return Response(200, b'{"live":true}')

    async def ready(self, request: Request) -> Response:
        if not self.plane.ready():
            raise _not_ready()
        return Response(200, b'{"ready":true}')

    async def server_metadata(self, request: Request) -> Response:
        return Response(200, orjson.dumps(self.plane.server_metadata()))

    async def model_metadata(self, request: Request) -> Response:
        name, version = _model(request)
        try:
            return Response(200, orjson.dumps(self.plane.model_metadata(name, version)))
        except ModelNotFound as exc:
            raise HTTPError(404, str(exc)) from None

    async def model_ready(self, request: Request) -> Response:
        name, version = _model(request)
        try:
            ready = self.plane.model_ready(name, version)
        except ModelNotFound as exc:
            raise HTTPError(404, str(exc)) from None
        if not ready:
            raise _not_ready()
        return Response(200, orjson.dumps({"name": name, "ready": True}))

    # -- inference -----------------------------------------------------------------------------

    async def infer(self, request: Request) -> Response:
        name, version = _model(request)
        inputs, requested, request_id, binary_outputs = self.decode(request)
        try:
            answer = await self.plane.infer(name, version, inputs, requested, request_id)
        except ModelNotFound as exc:
            raise HTTPError(404, str(exc)) from None
        identity = answer.model
        outputs: list[dict[str, Any]] = []
        blobs: list[bytes] = []
        for tensor in answer.outputs:
            entry: dict[str, Any] = {"name": tensor.name, "datatype": tensor.datatype, "shape": tensor.shape}
            if tensor.parameters:
                entry["parameters"] = tensor.parameters
            if binary_outputs(tensor.name):
                raw = to_raw(tensor.data)
                entry["parameters"] = {**tensor.parameters, "binary_data_size": len(raw)}
                blobs.append(raw)
            else:
                entry["data"] = json_data(tensor.data)
            outputs.append(entry)
        body: dict[str, Any] = {"model_name": identity.name, "model_version": identity.version}
        if answer.id is not None:
            body["id"] = answer.id
        body["outputs"] = outputs
        encoded = encode_json(body)
        if not blobs:
            return Response(200, encoded, rows=answer.rows, method=answer.method, model=identity)
        return Response(
            200,
            b"".join([encoded, *blobs]),
            OCTET_STREAM,
            [(b"inference-header-content-length", b"%d" % len(encoded))],
            rows=answer.rows,
            method=answer.method,
            model=identity,
        )

    # -- API description -----------------------------------------------------------------------

    def parameter_schema(self, name: str, core: ScoringCore) -> dict[str, Any]:
        """The served model's name and version: any other is a 404."""
        return {"type": "string", "enum": [core.identity.name if name == "name" else core.identity.version]}

    def schemas(self, core: ScoringCore, features: FeatureModels) -> list[type[BaseModel]]:
        """The wire models (unknown keys ignored, as KServe's and Triton's servers do), the request
        narrowed to what the served model surely accepts: one FP64 [1, n_features] tensor. Every other
        numeric datatype, row count and the one-tensor-per-feature form are accepted too, but a schema
        cannot tie the data's length to the shape. A model with typed columns: one input per column,
        of its datatype, its values of the column's JSON type (the categories as an enum)."""
        if core.typed:
            inputs: Any = _column_inputs(core, features)
        else:
            inputs = Annotated[list[_matrix_input(core)], Field(min_length=1, max_length=1)]  # type: ignore[misc]
        output = create_model(
            "RequestOutput",
            name=(Literal[core.methods], ...),  # type: ignore[valid-type]
            parameters=(OutputParameters | None, None),
        )
        request = create_model(
            "InferenceRequest",
            __doc__=InferenceRequest.__doc__,
            id=(str | None, None),
            parameters=(InferenceParameters | None, None),
            inputs=(inputs, ...),
            outputs=(list[output] | None, None),  # type: ignore[valid-type]
        )
        return [
            Parameters,
            InferenceParameters,
            OutputParameters,
            request,
            InferenceResponse,
            MetadataServerResponse,
            MetadataModelResponse,
            LiveResponse,
            ReadyResponse,
            ModelReadyResponse,
            V2Error,
        ]


class _CommonTensor(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    name: str
    shape: list[int]
    datatype: Literal["FP64"]
    data: list[Annotated[float, AllowInfNan(False)]]


class _CommonOutput(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True)  # type: ignore[misc]
    name: str


class _CommonRequest(TypedDict):
    """The body nearly every JSON client sends: validated as plain dicts, without building models, and
    its numbers already checked to be numbers (no booleans, no strings). Never an error of its own:
    whatever it refuses goes through InferenceRequest, which words the error."""

    __pydantic_config__ = ConfigDict(extra="forbid", strict=True, defer_build=True)  # type: ignore[misc]
    id: NotRequired[str]
    inputs: list[_CommonTensor]
    outputs: NotRequired[list[_CommonOutput]]


_common_request: TypeAdapter[_CommonRequest] = TypeAdapter(_CommonRequest)


def _common(header: bytes) -> tuple[list[Tensor], list[str] | None, str | None] | None:
    try:
        body = _common_request.validate_json(header)
    except ValidationError:
        return None
    tensors = []
    for given in body["inputs"]:
        shape = given["shape"]
        data = np.array(given["data"], dtype=np.float64)
        if len(shape) not in (1, 2) or min(shape, default=0) < 0 or math.prod(shape) != data.size:
            return None  # the full path words the error
        tensors.append(Tensor(given["name"], "FP64", shape, data.reshape(shape)))
    outputs = body.get("outputs")
    return tensors, None if outputs is None else [output["name"] for output in outputs], body.get("id")


def _decode(request: Request) -> tuple[list[Tensor], list[str] | None, str | None, Callable[[str], bool]]:
    """An inference request's body as tensors, the outputs asked for, its id, and which outputs go binary."""
    header, binary = _split(request)
    common = _common(header) if binary is None else None
    if common is not None:  # the usual JSON body: one flat FP64 tensor, outputs by name only
        inputs, requested, request_id = common
        return inputs, requested, request_id, _never
    try:
        parsed = InferenceRequest.model_validate_json(header)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    inputs = _inputs(parsed, binary)
    binary_outputs, requested = _outputs(parsed)
    return inputs, requested, parsed.id, binary_outputs


def _never(name: str) -> bool:
    return False


def _model(request: Request) -> tuple[str, str | None]:
    params = request.params or {}
    return params["name"], params.get("version")


def _not_ready() -> HTTPError:
    return HTTPError(503, "not ready: the model is loading or the service is stopping", headers=list(RETRY_AFTER))


def _split(request: Request) -> tuple[bytes, memoryview | None]:
    """The JSON part and the binary part (Triton's extension) of an inference request's body."""
    media_type = request.media_type
    if media_type not in ACCEPTED_TYPES and not media_type.endswith("+json"):
        raise HTTPError(415, "Content-Type must be application/json (or application/octet-stream with binary tensors)")
    body = request.body
    declared = request.headers.get(HEADER_LENGTH)
    if declared is None:
        return body, None
    try:
        length = int(declared)
    except ValueError:
        length = -1
    if not 0 <= length <= len(body):
        raise HTTPError(
            400, f"must be a byte count within the body ({len(body)} bytes)", field="Inference-Header-Content-Length"
        )
    return body[:length], memoryview(body)[length:]


def _inputs(parsed: InferenceRequest, binary: memoryview | None) -> list[Tensor]:
    tensors: list[Tensor] = []
    at = 0
    for i, given in enumerate(parsed.inputs):
        field = f"inputs[{i}]"
        size = given.parameters.binary_data_size if given.parameters else None
        if size is not None:
            if given.data is not None:  # Triton refuses both too
                raise ScoringError("give either data or binary_data_size, not both", f"{field}.data")
            if binary is None or at + size > len(binary):
                raise ScoringError(
                    "the binary data is shorter than binary_data_size says (Inference-Header-Content-Length "
                    "gives where the JSON ends)",
                    f"{field}.parameters.binary_data_size",
                )
            data = from_raw(given.datatype, given.shape, binary[at : at + size], field)
            at += size
        elif given.data is None:
            raise ScoringError("is required (or binary_data_size, with Triton's binary extension)", f"{field}.data")
        else:
            data = from_json(given.datatype, given.shape, given.data, field)
        tensors.append(Tensor(given.name, given.datatype, given.shape, data))
    if binary is not None and at != len(binary):
        raise ScoringError(
            f"{len(binary) - at} bytes follow the JSON beyond the inputs' binary_data_size",
            "Inference-Header-Content-Length",
        )
    return tensors


def _outputs(parsed: InferenceRequest) -> tuple[Any, list[str] | None]:
    """Which outputs go binary (a predicate on the name), and the outputs asked for by name."""
    everything = bool(parsed.parameters and parsed.parameters.binary_data_output)
    if not parsed.outputs:
        return (lambda name: everything), None
    flags = {
        output.name: output.parameters.binary_data
        for output in parsed.outputs
        if output.parameters is not None and output.parameters.binary_data is not None
    }

    def binary(name: str) -> bool:
        flag = flags.get(name)
        return everything if flag is None else flag

    return binary, [output.name for output in parsed.outputs]


def _validation_error(exc: ValidationError) -> HTTPError | ScoringError:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        detail = str(first.get("ctx", {}).get("error", "")) or "not valid JSON"
        return HTTPError(400, f"malformed JSON: {detail}")
    if not first["loc"]:
        return HTTPError(400, "the body must be a JSON object with inputs")
    field, message = describe(exc)
    return ScoringError(message.removeprefix(f"{field}: "), field)


def _matrix_input(core: ScoringCore) -> type[BaseModel]:
    width = core.n_features
    number = Annotated[float, Field(allow_inf_nan=False, json_schema_extra={"format": "double"})]
    return create_model(
        "RequestInput",
        __doc__=f"One row of the {width} features, in order: {', '.join(core.feature_names)}.",
        name=(str, ...),
        shape=(Annotated[list[int], Field(json_schema_extra={"enum": [[1, width]]})], ...),
        datatype=(Literal["FP64"], ...),
        parameters=(Parameters | None, None),
        data=(Annotated[list[number], Field(min_length=width, max_length=width)], ...),
    )


def _column_inputs(core: ScoringCore, features: FeatureModels) -> Any:
    """One input per typed column (any order): a model per column, told apart by its name."""
    models = []
    for i, (feature, column, value) in enumerate(zip(core.features, core.column_types, features.values, strict=True)):
        model = create_model(
            f"ColumnInput{i}",
            __doc__=f"Column {feature.name} ({'optional ' * feature.optional}{feature.type}): one value per row.",
            name=(Literal[feature.name], ...),
            shape=(Annotated[list[int], Field(min_length=1, max_length=2)], ...),
            datatype=(Literal[accepted(column)], ...),  # type: ignore[valid-type]
            parameters=(Parameters | None, None),
            data=(Annotated[list[value], Field(min_length=1)], ...),  # type: ignore[valid-type]
        )
        models.append(Annotated[model, Tag(feature.name)])
    one = Annotated[Union[tuple(models)], Discriminator("name")]  # type: ignore[valid-type]  # noqa: UP007
    width = core.n_features
    return Annotated[list[one], Field(min_length=width, max_length=width)]  # type: ignore[valid-type]


def _example(core: ScoringCore) -> dict[str, Any]:
    row = list(core.example_rows[0])
    if core.typed:
        inputs = [
            {"name": f.name, "shape": [1], "datatype": accepted(t)[0], "data": [value]}
            for f, t, value in zip(core.features, core.column_types, row, strict=True)
        ]
    else:
        inputs = [{"name": "input-0", "shape": [1, core.n_features], "datatype": "FP64", "data": row}]
    return {"id": "42", "inputs": inputs, "outputs": [{"name": method} for method in core.methods]}
