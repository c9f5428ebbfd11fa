"""Typed pipelines compiled to their arithmetic (encoded.py): a ColumnTransformer of OneHotEncoder,
StandardScaler, passthrough and drop before a linear model is scored from the checked table without
scikit-learn, giving the estimator's own answers (known and unseen categories alike); anything the
compiler does not know is served by the estimator itself."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diabetes_service.model.compile.encoded import EncodedLinear
from diabetes_service.model.loading import Feature, LoadedModel
from diabetes_service.scoring.core import ModelIdentity, ScoringCore, ScoringError

FEATURES = (
    Feature("city", "string"),
    Feature("visits", "long"),
    Feature("member", "boolean"),
    Feature("spend", "double"),
    Feature("code", "string"),
)


def _frame(n: int = 80) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "city": rng.choice(["oslo", "lima", "pune"], n).astype(object),
            "visits": rng.integers(0, 30, n).astype("int64"),
            "member": rng.random(n) < 0.4,
            "spend": rng.normal(50, 20, n),
            "code": rng.choice(["x", "y"], n).astype(object),
        }
    )
    target = frame["visits"] * 2.0 + frame["spend"] + (frame["city"] == "lima") * 30 + frame["member"] * 5
    return frame, target.to_numpy()


def _pipeline(final, *, handle_unknown="ignore", extra=None):
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    steps = [
        ("city", OneHotEncoder(handle_unknown=handle_unknown), ["city"]),
        ("numbers", StandardScaler(), ["visits", "spend"]),
        ("code", "drop", ["code"]),
        *(extra or []),
    ]
    return Pipeline([("columns", ColumnTransformer(steps, remainder="passthrough")), ("model", final)])


def _core(model, frame) -> ScoringCore:
    example = [[r.city, int(r.visits), bool(r.member), float(r.spend), r.code] for r in frame.head(2).itertuples()]
    core = ScoringCore(LoadedModel(model, FEATURES, example), ModelIdentity("m", "1"), max_rows=100)
    core.warm_up()
    return core


def _rows(frame: pd.DataFrame) -> list[dict]:
    return [
        {"city": r.city, "visits": int(r.visits), "member": bool(r.member), "spend": float(r.spend), "code": r.code}
        for r in frame.itertuples()
    ]


def _compiled(core: ScoringCore) -> bool:
    return isinstance(core.compiled, EncodedLinear)


@pytest.mark.parametrize("kind", ["ridge", "logistic"])
def test_a_linear_pipeline_is_compiled_and_answers_as_the_estimator(kind):
    from sklearn.linear_model import LogisticRegression, Ridge

    frame, target = _frame()
    labels = np.where(target > np.median(target), "high", "low")
    model = _pipeline(Ridge(alpha=0.5)) if kind == "ridge" else _pipeline(LogisticRegression(max_iter=500))
    model.fit(frame, target if kind == "ridge" else labels)
    core = _core(model, frame)
    assert _compiled(core)
    test = frame.sample(25, random_state=1).copy()
    test.loc[test.index[:3], "city"] = "a city it never saw"
    rows = _rows(test)
    for method in core.methods:
        ours = core.predict(core.matrix(rows), method)
        theirs = getattr(model, method)(test)
        if ours.dtype.kind == "f":
            np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
        else:
            assert ours.tolist() == theirs.tolist()


def test_an_unknown_category_under_handle_unknown_error_is_the_models_refusal():
    from sklearn.linear_model import Ridge

    frame, target = _frame()
    core = _core(_pipeline(Ridge(), handle_unknown="error").fit(frame, target), frame)
    assert _compiled(core)
    row = {**_rows(frame.head(1))[0], "city": "nowhere"}
    with pytest.raises(ScoringError, match="cannot score these values"):
        core.predict(core.matrix([row]), "predict")


def test_what_the_compiler_does_not_know_is_served_by_the_estimator():
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import MinMaxScaler

    frame, target = _frame()
    model = _pipeline(Ridge(), extra=[("member", MinMaxScaler(), ["member"])]).fit(frame, target)
    core = _core(model, frame)
    assert not _compiled(core)
    rows = _rows(frame.head(5))
    np.testing.assert_allclose(core.predict(core.matrix(rows), "predict"), model.predict(frame.head(5)), rtol=1e-12)
