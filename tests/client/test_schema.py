"""The service's fast reading of `POST /score` bodies agrees with the schema on every body."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from diabetes_client.schema import ScoreRequest, parse_score_request
from diabetes_client.schema_errors import describe

BODIES = [
    b'{"data": [[1.5, 2], [3.0, -4e-3]], "method": "predict"}',
    b'{"data": [[1.5, 2]]}',
    b'{"data": [{"age": 1.0, "sex": 2.0}, [1.0, 2.0]], "method": "predict_proba"}',
    b'{"data": [{"age": 1.0}]}',
    b'{"data": [[1.0, "2"]]}',
    b'{"data": [[1.0, true]]}',
    b'{"data": [[1.0, null]]}',
    b'{"data": [[1.0, [2.0]]]}',
    b'{"data": [[1.0], 3]}',
    b'{"data": []}',
    b'{"data": [[1.0]], "method": "transform"}',
    b'{"data": [[1.0]], "extra": 1}',
    b'{"rows": [[1.0]]}',
    b'{"data": [[1.0, NaN]]}',
    b'{"data": [[1.0, 1e999]]}',
    b'{"data": [[1.0, 2.0]',
    b"[]",
]


def _outcome(parse, body: bytes) -> object:
    """What a reader makes of `body`: its data and method, or the wording of its first error."""
    try:
        parsed = parse(body)
    except ValidationError as exc:
        return describe(exc)
    assert isinstance(parsed, ScoreRequest)
    return parsed.data, parsed.method


@pytest.mark.parametrize("body", BODIES)
def test_parse_score_request_is_the_schema(body: bytes) -> None:
    assert _outcome(parse_score_request, body) == _outcome(ScoreRequest.model_validate_json, body)


def test_the_bodies_cover_both_outcomes() -> None:
    outcomes = [_outcome(ScoreRequest.model_validate_json, body) for body in BODIES]
    assert sum(isinstance(outcome, tuple) and isinstance(outcome[0], list) for outcome in outcomes) == 4
