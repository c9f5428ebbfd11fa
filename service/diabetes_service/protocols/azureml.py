"""Azure ML's no-code scoring protocol: `GET /` liveness, `POST /score`, `GET /swagger.json`.

`/score` takes `{"data": [[...], ...], "method": ...}` (rows as lists or feature-keyed objects)
and answers a bare JSON list, one entry per row.
"""

from __future__ import annotations

import orjson
from pydantic import ValidationError

from diabetes_client.schema import parse_score_request
from diabetes_service.core import ScoringCore
from diabetes_service.http import HTTPError, Request, Response, json_response, text_response
from diabetes_service.openapi import openapi_document
from diabetes_service.state import ServiceState
from diabetes_service.validation import http_error

JSON_MEDIA_TYPES = ("", "application/json")


def require_json(request: Request) -> None:
    media_type = request.media_type
    if media_type not in JSON_MEDIA_TYPES and not media_type.endswith("+json"):
        raise HTTPError(415, "Content-Type must be application/json", field="Content-Type")


class AzureMLProtocol:
    def __init__(self, state: ServiceState) -> None:
        self.state = state
        self._swagger: tuple[ScoringCore, Response] | None = None

    def routes(self) -> list[tuple[str, str, object, bool]]:
        """(method, path, handler, public): public routes need no API key."""
        return [
            ("GET", "/", self.liveness, True),
            ("POST", "/score", self.score, False),
            ("GET", "/swagger.json", self.swagger, True),
        ]

    async def liveness(self, request: Request) -> Response:
        return text_response("Healthy")

    async def score(self, request: Request) -> Response:
        require_json(request)
        core = self.state.core or await self.state.core_when_warm()
        try:
            parsed = parse_score_request(request.body)
        except ValidationError as exc:
            raise http_error(exc) from None
        method = core.choose_method(parsed.method)
        matrix = core.matrix(parsed.data)
        result = await self.state.runner.predict(matrix, method)  # type: ignore[union-attr]
        request.rows = len(parsed.data)
        request.scoring_method = method
        request.model = core.identity
        return json_response(result)

    async def swagger(self, request: Request) -> Response:
        core = self.state.require_core()
        if self._swagger is None or self._swagger[0] is not core:  # built once per model version
            document = openapi_document(
                core, title=self.state.settings.service_name, auth_enabled=self.state.auth_enabled
            )
            self._swagger = (core, Response(200, orjson.dumps(document)))
        request.model = core.identity
        return self._swagger[1]
