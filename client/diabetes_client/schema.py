"""The wire schema of the Azure ML no-code protocol, defined once.

The scoring service validates request bodies with these models and the client builds and reads
them, so both sides agree on every rule by construction; the service's API description is generated
from them too. Importing this module needs only pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    StrictBool,
    StrictInt,
    StrictStr,
    Tag,
    TypeAdapter,
    ValidationError,
)

# Every model and adapter here is built on its first use, not at import (`defer_build`): a service
# worker starts without building validators for bodies it may never see. With the protocols' models,
# deferred likewise, a restart answers ~0.1 s sooner (`python -m loadtests.bench.startup`).
DEFERRED = ConfigDict(defer_build=True)

# The scoring methods, named here once for the client, the core and every protocol.
Method = Literal["predict", "predict_proba", "decision_function"]
METHODS: tuple[Method, ...] = get_args(Method)
PREDICT, PREDICT_PROBA, DECISION_FUNCTION = METHODS

# A feature value: a finite JSON number. Strict, so that "1.5", true and null are refused rather
# than coerced, and NaN / Infinity are refused because the example's features are finite doubles.
FeatureValue = Annotated[float, Strict(), AllowInfNan(False)]

# A value of a model with typed columns (MLflow's string, long, boolean, datetime, optional...): any
# JSON scalar, kept as JSON gave it (1 stays an integer, "1" a string); the service checks each one
# against its column's type.
TypedValue = Annotated[StrictBool | StrictInt | FeatureValue | StrictStr | None, Field(union_mode="left_to_right")]


def _row_kind(row: Any) -> str | None:
    if isinstance(row, list):
        return "list"
    if isinstance(row, dict):
        return "dict"
    return None


# A row is either the feature values in signature order, or an object keyed by feature name.
Row = Annotated[
    Annotated[list[FeatureValue], Tag("list")] | Annotated[dict[str, FeatureValue], Tag("dict")],
    Discriminator(_row_kind),
]


class ScoreRequest(BaseModel):
    """Body of `POST /score`."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    data: Annotated[list[Row], Field(min_length=1, description="One entry per row to score.")]
    method: Method | None = Field(
        default=None,
        description="`predict`, `predict_proba` or `decision_function` (where the model has it); "
        "left out, `predict_proba` where the model has it.",
    )


class _ListRowsRequest(ScoreRequest):
    """The same body when every row is a list: validated without calling the row discriminator
    (a Python function) once per row, a third of the time for 100 rows. Never an error of its own."""

    data: Annotated[list[list[FeatureValue]], Field(min_length=1)]


def parse_score_request(body: bytes | str) -> ScoreRequest:
    """Validate a `POST /score` body; raises pydantic's ValidationError worded by ScoreRequest itself."""
    try:
        return _ListRowsRequest.model_validate_json(body)
    except ValidationError:
        return ScoreRequest.model_validate_json(body)


class ScoringParams(BaseModel):
    """`params` of an Azure ML v2 or MLflow body. Other keys are accepted and ignored, as MLflow does
    for scikit-learn models; `method` is this service's extension."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    method: Method | None = Field(
        default=None,
        description="`predict`, `predict_proba` or `decision_function`; "
        "left out, the one the model's MLflow pyfunc calls.",
    )


class InputDataSplit(BaseModel):
    """A table in pandas' "split" layout: column names, optional row labels, rows in column order."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    columns: list[str] | None = Field(default=None, description="Column names, any order; left out: feature order.")
    index: list[Any] | None = Field(default=None, description="Row labels; ignored.")
    data: Annotated[list[list[FeatureValue]], Field(min_length=1, description="One list of values per row.")]


def _input_data_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "split"
    if isinstance(value, list):
        return "rows"
    return None


class AzureV2Request(BaseModel):
    """Body of `POST /score` as Azure ML managed online endpoints send it to an MLflow model."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    input_data: Annotated[
        Annotated[InputDataSplit, Tag("split")] | Annotated[Annotated[list[Row], Field(min_length=1)], Tag("rows")],
        Discriminator(
            _input_data_kind,
            custom_error_type="input_data_kind",
            custom_error_message="must be an object with columns and data, or a list of rows",
        ),
    ]
    params: ScoringParams | None = None


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx answer: a message naming the field and the problem, never the input."""

    model_config = ConfigDict(extra="ignore", defer_build=True)

    message: str
    field: str | None = None


TypedRow = Annotated[
    Annotated[list[TypedValue], Tag("list")] | Annotated[dict[str, TypedValue], Tag("dict")],
    Discriminator(_row_kind),
]


class TypedScoreRequest(ScoreRequest):
    """`POST /score` for a model with typed columns."""

    data: Annotated[list[TypedRow], Field(min_length=1, description="One entry per row to score.")]


class TypedInputDataSplit(InputDataSplit):
    """pandas' "split" layout for a model with typed columns."""

    data: Annotated[list[list[TypedValue]], Field(min_length=1, description="One list of values per row.")]


class TypedAzureV2Request(AzureV2Request):
    """An Azure ML v2 body for a model with typed columns."""

    input_data: Annotated[
        Annotated[TypedInputDataSplit, Tag("split")]
        | Annotated[Annotated[list[TypedRow], Field(min_length=1)], Tag("rows")],
        Discriminator(
            _input_data_kind,
            custom_error_type="input_data_kind",
            custom_error_message="must be an object with columns and data, or a list of rows",
        ),
    ]


def parse_typed_score_request(body: bytes | str) -> TypedScoreRequest:
    """`POST /score` for a model with typed columns: any JSON scalar per value, checked by the service."""
    return TypedScoreRequest.model_validate_json(body)


# A prediction: a number, or the model's own class label (a string, an integer, a boolean), as JSON gave it.
Label = Annotated[StrictBool | StrictInt | FeatureValue | StrictStr, Field(union_mode="left_to_right")]
PredictResponse: TypeAdapter[list[Label]] = TypeAdapter(list[Label], config=DEFERRED)
PredictProbaResponse: TypeAdapter[list[list[float]]] = TypeAdapter(list[list[float]], config=DEFERRED)
