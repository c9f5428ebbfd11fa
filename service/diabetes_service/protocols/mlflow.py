"""MLflow's scoring protocol, as `mlflow models serve` speaks it: `/ping`, `/health`, `/version`, `/invocations`.

`POST /invocations` takes JSON with exactly one of `dataframe_split` (columns in any order, `index`
ignored; left without columns, the values are in feature order), `dataframe_records`, `instances`
or `inputs` (a dict of columns, or rows), with optional `params`, or `text/csv` with a header row,
and answers `{"predictions": [...]}`. As MLflow does, columns the model does not use are ignored
and the method is the one the MLmodel file's pyfunc `predict_fn` names; `params.method` picks
another (this service's extension: MLflow ignores params for scikit-learn models). Beyond MLflow,
`instances` and `inputs` may also be lists of rows in feature order. Parquet bodies are refused
with 415. Errors: `{"error_code", "message"}`, as MLflow's scoring server writes them.
"""

from __future__ import annotations

import csv
import io
import re
from typing import Annotated, Any, NotRequired

import orjson
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError, create_model
from typing_extensions import TypedDict

from diabetes_client.schema import (
    FeatureValue,
    InputDataSplit,
    Row,
    ScoringParams,
    TypedInputDataSplit,
    TypedRow,
    TypedValue,
)
from diabetes_client.schema_errors import describe
from diabetes_service.protocols.base import Body, Protocol, Route, message_of, ref
from diabetes_service.protocols.http import HTTPError, Request, Response, encode_json
from diabetes_service.protocols.openapi_models import FeatureModels
from diabetes_service.scoring.core import INVALID, TOO_MANY_ROWS, ScoringCore, ScoringError
from diabetes_service.scoring.state import ServiceState

INPUT_FIELDS = ("dataframe_split", "dataframe_records", "instances", "inputs")
PARQUET = "application/vnd.apache.parquet"
SUPPORTED = "application/json (dataframe_split, dataframe_records, instances or inputs) or text/csv with a header row"

# MLflow's error codes (its databricks_pb2 names) for the statuses this service answers.
ERROR_CODES = {
    400: "BAD_REQUEST",
    401: "UNAUTHENTICATED",
    404: "ENDPOINT_NOT_FOUND",
    405: "BAD_REQUEST",
    408: "DEADLINE_EXCEEDED",
    413: "RESOURCE_EXHAUSTED",
    415: "BAD_REQUEST",
    429: "REQUEST_LIMIT_EXCEEDED",
    503: "TEMPORARILY_UNAVAILABLE",
}
INTERNAL_ERROR = "INTERNAL_ERROR"
INVALID_PARAMETER_VALUE = "INVALID_PARAMETER_VALUE"


def _inputs_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "columns"
    if isinstance(value, list):
        return "rows"
    return None


# The wire models below are built on their first use (`defer_build`), as diabetes_client.schema's are.
class InvocationsRequest(BaseModel):
    """JSON body of `POST /invocations`: exactly one of the four input fields, and optional `params`.
    Other keys are ignored, as MLflow's scoring server ignores them."""

    model_config = ConfigDict(extra="ignore", frozen=True, defer_build=True)

    dataframe_split: InputDataSplit | None = None
    dataframe_records: list[dict[str, FeatureValue]] | None = Field(default=None, description="One object per row.")
    instances: list[Row] | None = Field(default=None, description="One entry per row.")
    inputs: (
        Annotated[
            Annotated[dict[str, list[FeatureValue]], Tag("columns")] | Annotated[list[Row], Tag("rows")],
            Discriminator(
                _inputs_kind,
                custom_error_type="inputs_kind",
                custom_error_message="must be an object of columns or a list of rows",
            ),
        ]
        | None
    ) = Field(default=None, description="One list of values per column, or one entry per row.")
    params: ScoringParams | None = None


class TypedInvocationsRequest(InvocationsRequest):
    """The same body for a model with typed columns: any JSON scalar per value, checked by the core."""

    dataframe_split: TypedInputDataSplit | None = None
    dataframe_records: list[dict[str, TypedValue]] | None = Field(default=None, description="One object per row.")
    instances: list[TypedRow] | None = Field(default=None, description="One entry per row.")
    inputs: (
        Annotated[
            Annotated[dict[str, list[TypedValue]], Tag("columns")] | Annotated[list[TypedRow], Tag("rows")],
            Discriminator(
                _inputs_kind,
                custom_error_type="inputs_kind",
                custom_error_message="must be an object of columns or a list of rows",
            ),
        ]
        | None
    ) = Field(default=None, description="One list of values per column, or one entry per row.")


class _SplitTable(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]
    columns: list[str]
    data: list[list[FeatureValue]]
    index: NotRequired[list[Any]]


class _SplitBody(TypedDict):
    """The common body, `dataframe_split` with its columns and nothing else but `params`: validated as
    plain dicts, without building models (2.2 against 3.8 µs for one row). Never an error of its own:
    whatever it refuses goes through InvocationsRequest, which words the error."""

    __pydantic_config__ = ConfigDict(extra="forbid", defer_build=True)  # type: ignore[misc]
    dataframe_split: _SplitTable
    params: NotRequired[ScoringParams]


_split_body: TypeAdapter[_SplitBody] = TypeAdapter(_SplitBody)


class MlflowError(BaseModel):
    """Body of every MLflow-protocol error, as MLflow's scoring server writes it."""

    model_config = ConfigDict(defer_build=True)

    error_code: str = Field(description="MLflow's error code, e.g. BAD_REQUEST or INVALID_PARAMETER_VALUE.")
    message: str


class MlflowPredictions(BaseModel):
    """Answer of `POST /invocations`."""

    model_config = ConfigDict(defer_build=True)

    predictions: list[float | list[float]] = Field(
        description="One entry per row: a number (predict) or a list of class probabilities (predict_proba)."
    )


class MlflowProtocol(Protocol):
    name = "mlflow"
    error_model = MlflowError
    statuses = {INVALID: 400, TOO_MANY_ROWS: 413}  # noqa: RUF012 - read-only class table
    parse_steps = ("decode_json", "decode_csv")

    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self.decode_json = _decode_json
        self.decode_csv = _decode_csv

    def routes(self) -> list[Route]:
        ping = {"public": True, "answer_description": "Ready: the model is loaded", "errors": (503,)}
        return [
            Route("GET", "/ping", self.ping, self, summary="MLflow health check", **ping),  # type: ignore[arg-type]
            Route("GET", "/health", self.ping, self, summary="MLflow health check (as /ping)", **ping),  # type: ignore[arg-type]
            Route(
                "GET",
                "/version",
                self.version,
                self,
                summary="MLflow's version",
                answer={"text/plain": Body({"type": "string"})},
            ),
            Route(
                "POST",
                "/invocations",
                self.invocations,
                self,
                summary="Score rows with the model (MLflow scoring protocol)",
                request={
                    "application/json": Body(ref("InvocationsRequest"), example=_example),
                    "text/csv": Body(_csv_schema),
                },
                answer={"application/json": Body(ref("MlflowPredictions"))},
                answer_description="One prediction per row",
                errors=(400, 408, 413, 415, 503),
            ),
        ]

    def error_response(self, error: HTTPError | ScoringError) -> Response:
        if isinstance(error, ScoringError):
            status, code, headers = self.status_of(error), INVALID_PARAMETER_VALUE, []
            if status != 400:
                code = ERROR_CODES.get(status, INTERNAL_ERROR)
        else:
            status, code, headers = error.status, ERROR_CODES.get(error.status, INTERNAL_ERROR), list(error.headers)
        return Response(status, orjson.dumps({"error_code": code, "message": message_of(error)}), headers=headers)

    async def ping(self, request: Request) -> Response:
        if not self.state.ready:  # loading (here or in another worker) or draining
            raise HTTPError(
                503, "not ready: the model is loading or the service is stopping", headers=[(b"retry-after", b"1")]
            )
        return Response(200, b"\n")

    async def version(self, request: Request) -> Response:
        core = self.state.require_core()
        # MLflow labels this bare version string application/json; it is text, and said so here.
        return Response(200, (core.pyfunc.mlflow_version or "unknown").encode(), b"text/plain; charset=utf-8")

    async def invocations(self, request: Request) -> Response:
        state = self.state
        core = state.core or await state.core_when_warm()
        raw_type = request.headers.get(b"content-type")
        if raw_type is None or raw_type == b"application/json":  # nearly every call
            matrix, asked = self.decode_json(core, request.body)
        else:
            media_type = _media_type(raw_type)
            if media_type == "application/json":
                matrix, asked = self.decode_json(core, request.body)
            elif media_type == "text/csv":
                matrix, asked = self.decode_csv(core, request.body), None
            elif media_type == PARQUET:
                raise HTTPError(415, f"Parquet bodies are not supported; send {SUPPORTED}", field="Content-Type")
            else:
                raise HTTPError(415, f"Content-Type {media_type or '(none)'} is not supported; send {SUPPORTED}")
        method = core.choose_method(asked or core.pyfunc_method)
        result = await state.runner.predict(matrix, method)  # type: ignore[union-attr]
        return Response(200, encode_json({"predictions": result}), rows=len(matrix), method=method, model=core.identity)

    def schemas(self, core: ScoringCore, features: FeatureModels) -> list[type[BaseModel]]:
        """InvocationsRequest narrowed to the served model's features, rows and methods."""
        records = Annotated[list[features.keyed_row], Field(min_length=1, max_length=core.max_rows)]  # type: ignore[name-defined]
        request = create_model(
            "InvocationsRequest",
            __doc__=InvocationsRequest.__doc__,
            # Exactly one input field, as the service checks after validation.
            __config__=ConfigDict(
                extra="allow", json_schema_extra={"oneOf": [{"required": [name]} for name in INPUT_FIELDS]}
            ),
            dataframe_split=(features.split, None),
            dataframe_records=(records, None),
            instances=(features.rows, None),
            inputs=(features.column_table | features.rows, None),
            params=(features.params, None),
        )
        return [*features.models, request, MlflowPredictions, MlflowError]


def _media_type(raw: bytes) -> str:
    """The media type, refusing a charset other than UTF-8 as MLflow's scoring server does."""
    media_type, *parameters = (part.strip() for part in raw.decode("latin-1").split(";"))
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise HTTPError(415, "only UTF-8 bodies are supported", field="Content-Type")
    return media_type.lower()


def _decode_json(core: ScoringCore, body: bytes) -> tuple[Any, str | None]:
    if not core.typed:
        try:
            common = _split_body.validate_json(body)
        except ValidationError:
            pass
        else:
            table, params = common["dataframe_split"], common.get("params")
            matrix = core.frame_matrix(table["columns"], table["data"], "dataframe_split", extra_columns=True)
            return matrix, params.method if params else None
    try:
        parsed = (TypedInvocationsRequest if core.typed else InvocationsRequest).model_validate_json(body)
    except ValidationError as exc:
        raise _validation_error(exc) from None
    given = [name for name in INPUT_FIELDS if getattr(parsed, name) is not None]
    if len(given) != 1:
        found = f"found {', '.join(given)}" if given else "found none"
        raise HTTPError(400, f"the body must hold exactly one of {', '.join(INPUT_FIELDS)}; {found}")
    asked = parsed.params.method if parsed.params else None
    if parsed.dataframe_split is not None:
        split = parsed.dataframe_split
        return core.frame_matrix(split.columns, split.data, "dataframe_split", extra_columns=True), asked
    if parsed.dataframe_records is not None:
        return core.matrix(parsed.dataframe_records, "dataframe_records", extra_columns=True), asked
    if parsed.instances is not None:
        return core.matrix(parsed.instances, "instances", extra_columns=True), asked
    inputs = parsed.inputs
    if isinstance(inputs, dict):
        return core.column_matrix(inputs, "inputs", extra_columns=True), asked
    return core.matrix(inputs, "inputs", extra_columns=True), asked  # type: ignore[arg-type]


def _validation_error(exc: ValidationError) -> HTTPError | ScoringError:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        detail = str(first.get("ctx", {}).get("error", "")) or "not valid JSON"
        return HTTPError(400, f"malformed JSON: {detail}")
    if not first["loc"]:  # not an object at all
        return HTTPError(400, f"the body must be a JSON object with one of {', '.join(INPUT_FIELDS)}")
    field, message = describe(exc)
    return ScoringError(message.removeprefix(f"{field}: "), field)


def _decode_csv(core: ScoringCore, body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, "the CSV body is not UTF-8") from None
    lines = [row for row in csv.reader(io.StringIO(text)) if row]
    if not lines:
        raise HTTPError(400, "the CSV body is empty; send a header row of feature names, then the rows")
    header, rows = [name.strip() for name in lines[0]], lines[1:]
    if core.typed:
        return core.frame_matrix(header, _typed_csv(core, header, rows), "csv", extra_columns=True)
    values: list[list[float]] = []
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ScoringError(f"has {len(row)} values, expected one per column ({len(header)})", f"csv row {i + 1}")
        try:
            values.append([float(cell) for cell in row])
        except ValueError:
            column = next(j for j, cell in enumerate(row) if not _is_number(cell))
            raise ScoringError(f"must be a number (column {header[column]!r})", f"csv row {i + 1}") from None
    return core.frame_matrix(header, values, "csv", extra_columns=True)


def _typed_csv(core: ScoringCore, header: list[str], rows: list[list[str]]) -> list[list[Any]]:
    """CSV cells to the JSON values their columns take, as pandas' reader types them for MLflow: an
    empty cell is null, numbers are numbers, True/False booleans; the core then checks each type."""
    types = {feature.name: feature.type for feature in core.features}
    out: list[list[Any]] = []
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ScoringError(f"has {len(row)} values, expected one per column ({len(header)})", f"csv row {i + 1}")
        out.append([_cell(cell, types.get(name)) for name, cell in zip(header, row, strict=True)])
    return out


def _cell(cell: str, column_type: str | None) -> Any:
    if cell == "":
        return None
    if column_type in ("string", "datetime", "binary", None):
        return cell
    if column_type == "boolean":
        return {"true": True, "false": False}.get(cell.strip().lower(), cell)
    try:
        return int(cell)
    except ValueError:
        pass
    try:
        return float(cell)
    except ValueError:
        return cell


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _csv_schema(core: ScoringCore) -> dict[str, Any]:
    """A header row of the features (described in feature order; any order is accepted), then rows of numbers."""
    number = r"-?[0-9]{1,15}(\.[0-9]{1,15})?"
    row = ",".join([number] * core.n_features)
    header = ",".join(re.escape(name) for name in core.feature_names)
    return {
        "type": "string",
        "description": "A header row of feature names, then one line of numbers per row.",
        "pattern": f"^{header}\n({row}\n)+$",
    }


def _example(core: ScoringCore) -> dict[str, Any]:
    return {"dataframe_split": {"columns": list(core.feature_names), "data": core.example_rows[:1]}}
