"""The wire schema of the Azure ML no-code protocol, defined once.

The scoring service validates request bodies with these models and the client builds and reads
them, so both sides agree on every rule by construction. Importing this module needs only pydantic.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AllowInfNan,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Strict,
    Tag,
    TypeAdapter,
    ValidationError,
)

Method = Literal["predict", "predict_proba"]
METHODS: tuple[Method, ...] = ("predict", "predict_proba")

# A feature value: a finite JSON number. Strict, so that "1.5", true and null are refused rather
# than coerced, and NaN / Infinity are refused because the example's features are finite doubles.
FeatureValue = Annotated[float, Strict(), AllowInfNan(False)]


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

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: Annotated[list[Row], Field(min_length=1, description="One entry per row to score.")]
    method: Method | None = Field(
        default=None,
        description="`predict` or `predict_proba`; left out, `predict_proba` where the model has it.",
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


class ErrorBody(BaseModel):
    """Body of every 4xx/5xx answer: a message naming the field and the problem, never the input."""

    model_config = ConfigDict(extra="ignore")

    message: str
    field: str | None = None


PredictResponse: TypeAdapter[list[float]] = TypeAdapter(list[float])
PredictProbaResponse: TypeAdapter[list[list[float]]] = TypeAdapter(list[list[float]])
