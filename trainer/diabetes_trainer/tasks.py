"""The two tasks `diabetes train` knows: what model each fits, how it is scored, which one wins.

regression      Ridge(alpha) on the disease progression; the lower test `mse` wins.
classification  LogisticRegression(C=1/alpha) on "progression above the training median"; the
                lower test `log_loss` wins (a proper scoring rule: it rewards calibrated
                probabilities, which is what `predict_proba` serves).
pipeline        the same Ridge(alpha) inside a Pipeline whose ColumnTransformer one-hot encodes `sex`
                given as a string ("female"/"male") and scales `age` given in whole years: a
                mixed-type model (string, long and double columns) for the service to show.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from diabetes_trainer.data import Split


@dataclass(frozen=True)
class Fitted:
    """A fitted estimator with its test-set metrics and what the plot needs."""

    estimator: Any
    params: dict[str, Any]
    metrics: dict[str, float]
    y_score: np.ndarray  # test-set predictions (regression) or P(above the median) (classification)
    score_label: str  # what y_score is, for the plot's axis


@dataclass(frozen=True)
class Task:
    name: str
    default_model_name: str
    default_alpha: float
    selection_metric: str  # the test metric that picks the sweep's winner and the champion
    fit: Callable[[Split, float], Fitted]
    # The model's inputs from the split's features (what the signature and input example describe).
    inputs: Callable[[pd.DataFrame], pd.DataFrame] = lambda x: x

    def better(self, candidate: float, incumbent: float) -> bool:
        """Strictly better on the selection metric (every selection metric here is lower-is-better)."""
        return math.isfinite(candidate) and (not math.isfinite(incumbent) or candidate < incumbent)


def fit_regression(split: Split, alpha: float) -> Fitted:
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    model = Ridge(alpha=alpha).fit(split.x_train, split.y_train)
    predicted = model.predict(split.x_test)
    mse = float(mean_squared_error(split.y_test, predicted))
    metrics = {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(mean_absolute_error(split.y_test, predicted)),
        "r2": float(r2_score(split.y_test, predicted)),
    }
    params = {"model": "Ridge", "alpha": alpha}
    return Fitted(model, params, metrics, np.asarray(predicted), "predicted")


def fit_classification(split: Split, alpha: float) -> Fitted:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    # The threshold comes from the training rows only, so the test set stays unseen.
    threshold = float(split.y_train.median())
    y_train = (split.y_train > threshold).astype("int64")
    y_test = (split.y_test > threshold).astype("int64")
    c = 1.0 / alpha
    model = LogisticRegression(C=c, max_iter=1000).fit(split.x_train, y_train)
    proba = model.predict_proba(split.x_test)[:, 1]
    metrics = {
        "accuracy": float(accuracy_score(y_test, model.predict(split.x_test))),
        "roc_auc": float(roc_auc_score(y_test, proba)),
        "log_loss": float(log_loss(y_test, proba, labels=[0, 1])),
    }
    params = {"model": "LogisticRegression", "alpha": alpha, "C": c, "threshold": threshold}
    return Fitted(model, params, metrics, np.asarray(proba), "P(progression above the training median)")


def pipeline_inputs(x: pd.DataFrame) -> pd.DataFrame:
    """The split's rows with `age` in whole years and `sex` as "female"/"male" (the raw data's codes
    1 and 2, in that order by convention), taken from the unscaled data by row label."""
    from sklearn.datasets import load_diabetes

    raw = load_diabetes(as_frame=True, scaled=False).data
    return x.assign(
        age=raw.loc[x.index, "age"].round().astype("int64"),
        sex=raw.loc[x.index, "sex"].map({1.0: "female", 2.0: "male"}).astype(object),
    )


def fit_pipeline(split: Split, alpha: float) -> Fitted:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x_train, x_test = pipeline_inputs(split.x_train), pipeline_inputs(split.x_test)
    columns = ColumnTransformer(
        [
            ("sex", OneHotEncoder(handle_unknown="ignore"), ["sex"]),
            ("age", StandardScaler(), ["age"]),
        ],
        remainder="passthrough",
    )
    model = Pipeline([("columns", columns), ("ridge", Ridge(alpha=alpha))]).fit(x_train, split.y_train)
    predicted = model.predict(x_test)

    mse = float(mean_squared_error(split.y_test, predicted))
    metrics = {
        "mse": mse,
        "rmse": math.sqrt(mse),
        "mae": float(mean_absolute_error(split.y_test, predicted)),
        "r2": float(r2_score(split.y_test, predicted)),
    }
    params = {"model": "Pipeline(ColumnTransformer, Ridge)", "alpha": alpha}
    return Fitted(model, params, metrics, np.asarray(predicted), "predicted")


TASKS: dict[str, Task] = {
    "regression": Task("regression", "diabetes_model", 0.03, "mse", fit_regression),
    "classification": Task("classification", "diabetes_classifier", 1.0, "log_loss", fit_classification),
    "pipeline": Task("pipeline", "diabetes_pipeline", 0.03, "mse", fit_pipeline, pipeline_inputs),
}
