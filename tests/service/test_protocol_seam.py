"""The seam between protocols and the core, in process: routes with path parameters, and the core's
matrix builders, whose shape and finiteness checks no adapter can skip."""

from __future__ import annotations

import numpy as np
import pytest

from diabetes_service.model.loading import load_model
from diabetes_service.model.trust import TrustPolicy
from diabetes_service.protocols.base import Protocol, Route, Router
from diabetes_service.scoring.core import INVALID, TOO_MANY_ROWS, ModelIdentity, ScoringCore, ScoringError
from tests.conftest import FEATURES


async def _handler(request):  # never called: routing only
    raise NotImplementedError


class _Stub(Protocol):
    name = "stub"


def test_fixed_and_templated_routes():
    protocol = _Stub()
    router = Router(
        [
            Route("POST", "/score", _handler, protocol),
            Route("GET", "/v2/models/{name}", _handler, protocol),
            Route("POST", "/v2/models/{name}/versions/{version}/infer", _handler, protocol),
        ]
    )
    route, params = router.match("POST", "/score")
    assert (route.path, params) == ("/score", None)
    route, params = router.match("POST", "/v2/models/diabetes_model/versions/3/infer")
    assert route.path == "/v2/models/{name}/versions/{version}/infer"
    assert params == {"name": "diabetes_model", "version": "3"}
    assert router.match("GET", "/v2/models/a/b") is None  # a parameter is one path segment
    assert router.match("GET", "/v2/models/diabetes_model")[1] == {"name": "diabetes_model"}
    # Known paths with another method: a 405 with the allowed ones, in the owner's error body.
    assert router.match("GET", "/score") is None
    assert router.allowed("/score") == ["POST"]
    assert router.allowed("/v2/models/x/versions/1/infer") == ["POST"]
    assert router.owner("/v2/models/x") is protocol
    assert router.allowed("/nowhere") == []
    assert router.owner("/nowhere") is None


@pytest.fixture(scope="module")
def core(example_model_pkl):
    trusted = TrustPolicy(allow_pickle=True)  # the test's own pickle
    core = ScoringCore(load_model(example_model_pkl, trusted), ModelIdentity("m", "1"), max_rows=5)
    core.warm_up()
    return core


def test_columns_in_any_order_and_extra_columns(core, example_data):
    rows = example_data.x_test[:3]
    expected = core.matrix(rows)
    reordered = core.frame_matrix(FEATURES[::-1], [r[::-1] for r in rows], "t")
    np.testing.assert_array_equal(reordered, expected)
    extra = core.frame_matrix([*FEATURES, "id"], [[*r, 7.0] for r in rows], "t", extra_columns=True)
    np.testing.assert_array_equal(extra, expected)
    columns = {name: [r[i] for r in rows] for i, name in enumerate(FEATURES)}
    np.testing.assert_array_equal(core.column_matrix(columns, "inputs"), expected)
    with pytest.raises(ScoringError, match="unknown feature 'id'") as raised:
        core.frame_matrix([*FEATURES, "id"], [[*r, 7.0] for r in rows], "t")
    assert raised.value.field == "t.columns"


@pytest.mark.parametrize(
    ("call", "field", "words", "kind"),
    [
        (lambda c: c.frame_matrix(FEATURES[:9], [[0.1] * 9], "t"), "t.columns", "missing feature 's6'", INVALID),
        (lambda c: c.frame_matrix([*FEATURES[:9], "age"], [[0.1] * 10], "t"), "t.columns", "given twice", INVALID),
        (lambda c: c.frame_matrix(FEATURES, [[0.1] * 10, [0.1] * 9], "t"), "t.data[1]", "9 values", INVALID),
        (
            lambda c: c.column_matrix({n: [0.1, 0.2] for n in FEATURES} | {"s6": [0.1]}, "in"),
            "in",
            "same number",
            INVALID,
        ),
        (lambda c: c.checked(np.full((2, 10), 0.1)[:, :9], "m"), "m", "rows of 10 values", INVALID),
        (lambda c: c.checked(np.full((6, 10), 0.1), "m"), "m", "limit of 5 rows", TOO_MANY_ROWS),
        (lambda c: c.frame_matrix(FEATURES[::-1], [[0.1] * 9 + [float("nan")]], "t"), "t.data[0][0]", "age", INVALID),
        (lambda c: c.matrix([[0.1] * 9 + ["x"]], "d"), "d[0][9]", "must be a number", INVALID),
        (lambda c: c.column_matrix({n: [float("inf")] for n in FEATURES}, "in"), "in[0][0]", "finite", INVALID),
    ],
)
def test_every_builder_checks_shape_and_finiteness(core, call, field, words, kind):
    with pytest.raises(ScoringError) as raised:
        call(core)
    assert raised.value.field == field
    assert words in raised.value.message
    assert raised.value.kind == kind
