"""Azure ML's scoring protocol: `GET /` liveness, `POST /score`, `GET /swagger.json`.

`/score` takes the no-code v1 body `{"data": [[...], ...], "method": ...}` (rows as lists or
feature-keyed objects) and the v2 bodies Azure ML managed online endpoints send to MLflow models,
`{"input_data": {"columns", "index", "data"}}` or `{"input_data": [[...], ...]}` with optional
`params`. Every body is answered with a bare JSON list, one entry per row, as both Azure scoring
scripts do. Errors: `{"message", "field"}`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, create_model

from diabetes_client.schema import (
    AzureV2Request,
    ErrorBody,
    InputDataSplit,
    ScoreRequest,
    TypedAzureV2Request,
    TypedScoreRequest,
    parse_score_request,
    parse_typed_score_request,
)
from diabetes_service.protocols.base import Body, Protocol, Route, message_of, ref
from diabetes_service.protocols.http import HTTPError, Request, Response, json_response, text_response
from diabetes_service.protocols.openapi_models import FeatureModels
from diabetes_service.protocols.validation import http_error
from diabetes_service.scoring.core import INVALID, TOO_MANY_ROWS, ScoringCore, ScoringError
from diabetes_service.scoring.state import ServiceState

JSON_MEDIA_TYPES = ("", "application/json")
SCORING_ERRORS = (400, 408, 413, 415, 422, 503)


def require_json(request: Request) -> None:
    media_type = request.media_type
    if media_type not in JSON_MEDIA_TYPES and not media_type.endswith("+json"):
        raise HTTPError(415, "Content-Type must be application/json", field="Content-Type")


def parse_score_body(body: bytes) -> ScoreRequest | AzureV2Request:
    """A v1 body first (the hot path, unchanged); a body that is not v1 and names `input_data`, as v2."""
    try:
        return parse_score_request(body)
    except ValidationError as not_v1:
        if b'"input_data"' not in body:
            raise
        try:
            return AzureV2Request.model_validate_json(body)
        except ValidationError as not_v2:
            # Both failed: the v2 error, unless the body does not even parse as JSON.
            raise not_v2 from not_v1


def parse_typed_score_body(body: bytes) -> TypedScoreRequest | AzureV2Request:
    """The same bodies for a model with typed columns: any JSON scalar per value, checked by the core."""
    try:
        return parse_typed_score_request(body)
    except ValidationError as not_v1:
        if b'"input_data"' not in body:
            raise
        try:
            return TypedAzureV2Request.model_validate_json(body)
        except ValidationError as not_v2:
            raise not_v2 from not_v1


def _with_hint(error: HTTPError, body: bytes) -> HTTPError:
    """A body that holds its rows under "rows" (as the project's example_test_rows.json does) is
    told where they go, rather than only that `data` is missing. Error path only: no hot-path cost."""
    if error.field == "data" and error.message == "data: is required" and b'"rows"' in body:
        return HTTPError(error.status, 'data: is required; did you mean "data"? (the body has "rows")', field="data")
    return error


class AzureMLProtocol(Protocol):
    name = "azureml"
    error_model = ErrorBody
    statuses = {INVALID: 422, TOO_MANY_ROWS: 413}  # noqa: RUF012 - read-only class table
    parse_steps = ("parse", "parse_typed")

    def __init__(self, state: ServiceState, describe: Callable[[ScoringCore], bytes]) -> None:
        self.state = state
        self._describe = describe
        self.parse = parse_score_body
        self.parse_typed = parse_typed_score_body
        self._swagger: tuple[ScoringCore, bytes] | None = None

    def routes(self) -> list[Route]:
        return [
            Route("GET", "/", self.liveness, self, public=True, summary="Liveness", answer_description="Healthy"),
            Route(
                "POST",
                "/score",
                self.score,
                self,
                summary="Score rows with the model (Azure ML v1 and v2 bodies)",
                request={"application/json": Body(ref("ScoreBody"), example=_example)},
                answer={"application/json": Body(ref("Predictions"))},
                answer_description="One prediction per row: a number (predict) or class probabilities (predict_proba)",
                errors=SCORING_ERRORS,
            ),
            Route(
                "GET",
                "/swagger.json",
                self.swagger,
                self,
                public=True,
                summary="This API description",
                answer={"application/json": Body({"type": "object"})},
                errors=(503,),
            ),
        ]

    def error_response(self, error: HTTPError | ScoringError) -> Response:
        if isinstance(error, ScoringError):
            body = orjson.dumps({"message": message_of(error), "field": error.field})
            return Response(self.status_of(error), body)
        body = orjson.dumps({"message": error.message, "field": error.field})
        return Response(error.status, body, headers=list(error.headers))

    async def liveness(self, request: Request) -> Response:
        return text_response("Healthy")

    async def score(self, request: Request) -> Response:
        require_json(request)
        state = self.state
        core = state.core or await state.core_when_warm()
        try:
            parsed = self.parse_typed(request.body) if core.typed else self.parse(request.body)
        except ValidationError as exc:
            raise _with_hint(http_error(exc), request.body) from None
        if isinstance(parsed, AzureV2Request):
            # Azure's MLflow scoring script calls the model's pyfunc: its method unless `params` names one.
            method = core.choose_method((parsed.params and parsed.params.method) or core.pyfunc_method)
            table = parsed.input_data
            if isinstance(table, InputDataSplit):
                matrix = core.frame_matrix(table.columns, table.data, "input_data")
            else:
                matrix = core.matrix(table, "input_data")
        else:
            method = core.choose_method(parsed.method)  # type: ignore[union-attr]
            matrix = core.matrix(parsed.data)  # type: ignore[union-attr]
        result = await state.runner.predict(matrix, method)  # type: ignore[union-attr]
        response = json_response(result)
        response.rows = len(matrix)
        response.method = method
        response.model = core.identity
        return response

    async def swagger(self, request: Request) -> Response:
        core = self.state.require_core()
        if self._swagger is None or self._swagger[0] is not core:  # built once per model version
            self._swagger = (core, self._describe(core))
        return Response(200, self._swagger[1], model=core.identity)

    def schemas(self, core: ScoringCore, features: FeatureModels) -> list[type[BaseModel]]:
        """ScoreRequest and AzureV2Request, narrowed to the served model's features, rows and methods."""
        v1 = create_model(
            "ScoreRequest",
            __base__=ScoreRequest,
            __doc__=ScoreRequest.__doc__,
            data=(features.rows, ...),
            method=(features.methods | None, Field(default=None, description=f"Left out: {core.default_method}.")),
        )
        v2 = create_model(
            "AzureV2Request",
            __doc__=AzureV2Request.__doc__,
            __config__=ConfigDict(extra="forbid"),
            input_data=(features.split | features.rows, ...),
            params=(features.params | None, None),
        )
        body = type("ScoreBody", (RootModel[v1 | v2],), {"__doc__": "Either body of `POST /score`."})  # type: ignore[valid-type]
        return [*features.models, v1, v2, body, Predictions, ErrorBody]


class Predictions(RootModel[list[float | list[float]]]):
    """One entry per row: a number (predict) or a list of class probabilities (predict_proba)."""

    model_config = ConfigDict(defer_build=True)


def _example(core: ScoringCore) -> dict[str, Any]:
    # Feature-keyed rows: the Swagger page then shows every feature name in the example body.
    names = core.feature_names
    return {
        "data": [dict(zip(names, row, strict=True)) for row in core.example_rows[:1]],
        "method": core.default_method,
    }
