"""The catalogue of invalid requests: caller mistakes the contract says get a 4xx, never a 5xx."""

from __future__ import annotations

import json
from dataclasses import dataclass

from diabetes_loadtest.settings import auth_headers

_ROW = [0.01, 0.05, 0.06, 0.02, -0.04, -0.03, -0.04, 0.0, 0.02, -0.01]


@dataclass(frozen=True)
class InvalidRequest:
    """A request the service must refuse; `status` is the exact code the contract names, if any."""

    name: str
    payload: str
    headers: dict[str, str]
    status: int | None = None


def _body(data: object, method: str = "predict") -> str:
    return json.dumps({"data": data, "method": method})


def invalid_requests(api_key: str | None) -> list[InvalidRequest]:
    """The invalid requests to mix into the load; the key cases only when the run uses a key."""
    ok = auth_headers(api_key)
    cases = [
        InvalidRequest("short row", _body([_ROW[:9]]), ok),
        InvalidRequest("long row", _body([[*_ROW, 0.0]]), ok),
        InvalidRequest("string value", _body([["0.01", *_ROW[1:]]]), ok),
        InvalidRequest("null value", _body([[None, *_ROW[1:]]]), ok),
        InvalidRequest("boolean value", _body([[True, *_ROW[1:]]]), ok),
        InvalidRequest("nested list", _body([[[0.01], *_ROW[1:]]]), ok),
        InvalidRequest("NaN value", '{"data": [[NaN, 0, 0, 0, 0, 0, 0, 0, 0, 0]], "method": "predict"}', ok),
        InvalidRequest("unknown method", _body([_ROW], method="transform"), ok),
        InvalidRequest("empty data", _body([]), ok),
        InvalidRequest("malformed JSON", '{"data": [[0.01, 0.05', ok),
        InvalidRequest("wrong content type", _body([_ROW]), {**ok, "Content-Type": "text/plain"}, 415),
    ]
    if api_key:
        cases += [
            InvalidRequest("missing key", _body([_ROW]), auth_headers(None), 401),
            InvalidRequest("wrong key", _body([_ROW]), auth_headers(api_key + "-wrong"), 401),
        ]
    return cases
