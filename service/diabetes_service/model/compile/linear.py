"""Linear models compiled to their arithmetic: numpy only, no scikit-learn at serving time.

For the example's Ridge, `estimator.predict` spends ~40 µs validating a 1-row input against ~1 µs
of arithmetic, and importing scikit-learn costs a worker ~150 MiB. The scoring core has already
validated its input (shape, finite doubles), so for scikit-learn's own linear models we keep just
the coefficients and compute the same expression. A compiled model is used only after it gave
the estimator's own answers on probe rows (`compile_verified`); anything else is served by the
estimator itself. Compiled once by the supervisor's preparation step, saved, and loaded by the
workers with numpy alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from diabetes_client.schema import METHODS

ARRAYS_FILE = "linear.npz"
META_FILE = "linear.json"


class LinearRegressor:
    """`predict` of a fitted linear regressor: x @ coef.T + intercept."""

    kind = "regressor"

    def __init__(self, coef_t: np.ndarray, intercept: np.ndarray, estimator_name: str) -> None:
        self.coef_t = coef_t
        # A single target's intercept as a Python float: adding one to an array is the cheaper call.
        self.intercept = float(intercept) if np.ndim(intercept) == 0 else intercept
        self.estimator_name = estimator_name

    def predict(self, x: np.ndarray) -> np.ndarray:
        return x.dot(self.coef_t) + self.intercept

    def arrays(self) -> dict[str, np.ndarray]:
        return {"coef_t": self.coef_t, "intercept": np.asarray(self.intercept)}


class LogisticClassifier:
    """`predict` and `predict_proba` of a fitted LogisticRegression."""

    kind = "logistic"

    def __init__(self, coef_t: np.ndarray, intercept: np.ndarray, classes: np.ndarray, estimator_name: str) -> None:
        self.coef_t = coef_t
        self.intercept = intercept
        self.classes = classes
        self.classes_ = classes  # the estimator's name for them: the order of predict_proba's columns
        self.estimator_name = estimator_name

    def _decision(self, x: np.ndarray) -> np.ndarray:
        scores = x @ self.coef_t + self.intercept
        return scores.ravel() if scores.shape[1] == 1 else scores

    def decision_function(self, x: np.ndarray) -> np.ndarray:
        return self._decision(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        scores = self._decision(x)
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return self.classes.take(indices)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        scores = self._decision(x)
        if scores.ndim == 1:  # binary: the logistic function of the one decision value
            positive = 1.0 / (1.0 + np.exp(-scores))
            return np.column_stack([1.0 - positive, positive])
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def arrays(self) -> dict[str, np.ndarray]:
        return {"coef_t": self.coef_t, "intercept": np.asarray(self.intercept), "classes": self.classes}


CompiledModel = LinearRegressor | LogisticClassifier


def _compile(estimator: Any) -> CompiledModel | None:
    if isinstance(estimator, LinearRegressor | LogisticClassifier):
        return estimator
    # scikit-learn's own classes only: a user's subclass may change the formula.
    if not type(estimator).__module__.startswith("sklearn.linear_model."):
        return None
    from sklearn.linear_model import LogisticRegression
    from sklearn.linear_model._base import LinearModel

    name = type(estimator).__name__
    coef_t = np.ascontiguousarray(np.asarray(estimator.coef_, dtype=np.float64).T)
    intercept = np.asarray(estimator.intercept_, dtype=np.float64)
    if type(estimator) is LogisticRegression:
        classes = np.asarray(estimator.classes_)
        if classes.dtype.kind not in "biuU":  # saved without pickle: numbers, booleans, strings
            return None
        return LogisticClassifier(coef_t, intercept, classes, name)
    if isinstance(estimator, LinearModel):
        return LinearRegressor(coef_t, intercept, name)
    return None


def answers_agree(ours: np.ndarray, theirs: np.ndarray) -> bool:
    """The same answers: equal labels, numbers equal to 1e-12 (summation order may differ)."""
    if ours.shape != theirs.shape:
        return False
    if ours.dtype.kind in "fc":
        return bool(np.allclose(ours, theirs, rtol=1e-12, atol=1e-12))
    return bool(np.array_equal(ours, theirs))


def compile_verified(estimator: Any, probe: np.ndarray) -> CompiledModel | None:
    """The compiled form of `estimator`, if it answers exactly as the estimator on `probe`."""
    try:
        compiled = _compile(estimator)
        if compiled is None or compiled is estimator:
            return compiled
        for method in METHODS:
            if hasattr(estimator, method) != hasattr(compiled, method):
                return None
            if not hasattr(compiled, method):
                continue
            if not answers_agree(getattr(compiled, method)(probe), getattr(estimator, method)(probe)):
                return None
        return compiled
    except Exception:  # any doubt: the estimator serves itself
        return None


def save(compiled: CompiledModel, folder: Path, meta: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / ARRAYS_FILE, **compiled.arrays())
    (folder / META_FILE).write_text(json.dumps({**meta, "kind": compiled.kind, "name": compiled.estimator_name}))


def load(folder: Path) -> tuple[CompiledModel, dict[str, Any]]:
    meta = json.loads((folder / META_FILE).read_text())
    with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
        if meta["kind"] == "logistic":
            return LogisticClassifier(arrays["coef_t"], arrays["intercept"], arrays["classes"], meta["name"]), meta
        return LinearRegressor(arrays["coef_t"], arrays["intercept"], meta["name"]), meta
