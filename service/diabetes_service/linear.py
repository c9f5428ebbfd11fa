"""Fast paths for linear models: the arithmetic of `predict` without scikit-learn's per-call checks.

For the example's Ridge, `estimator.predict` spends ~40 µs validating a 1-row input against ~1 µs
of arithmetic. The scoring core has already validated the input (shape, finite doubles), so for
estimator classes whose methods are exactly scikit-learn's linear ones we compute the same
expression directly. Every fast path is checked against the estimator's own method at load time
(`verified_fast_paths`) and dropped on any difference, so a subclass or a future scikit-learn
that changes the formula falls back to the estimator instead of answering differently.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Predictor = Callable[[np.ndarray], np.ndarray]


def _is_sklearn_class(estimator: Any) -> bool:
    # scikit-learn's own linear models (Ridge overrides `predict` only to call LinearModel's);
    # a user's subclass may change the formula, so it keeps its own method.
    return type(estimator).__module__.startswith("sklearn.linear_model.")


def _regressor_paths(estimator: Any) -> dict[str, Predictor]:
    from sklearn.linear_model._base import LinearModel

    if not isinstance(estimator, LinearModel):
        return {}
    if type(estimator).predict is not LinearModel.predict and not _is_sklearn_class(estimator):
        return {}
    coef_t = np.asarray(estimator.coef_).T
    intercept = estimator.intercept_
    return {"predict": lambda x: x @ coef_t + intercept}


def _logistic_paths(estimator: Any) -> dict[str, Predictor]:
    from scipy.special import expit, softmax
    from sklearn.linear_model import LogisticRegression

    if type(estimator) is not LogisticRegression:
        return {}
    coef_t = np.asarray(estimator.coef_).T
    intercept = estimator.intercept_
    classes = estimator.classes_

    def decision(x: np.ndarray) -> np.ndarray:
        scores = x @ coef_t + intercept
        return scores.ravel() if scores.shape[1] == 1 else scores

    def predict(x: np.ndarray) -> np.ndarray:
        scores = decision(x)
        indices = (scores > 0).astype(np.intp) if scores.ndim == 1 else scores.argmax(axis=1)
        return classes.take(indices)

    def predict_proba(x: np.ndarray) -> np.ndarray:
        scores = decision(x)
        if scores.ndim == 1:
            positive = expit(scores)
            return np.vstack([1 - positive, positive]).T
        return softmax(scores, axis=1)

    return {"predict": predict, "predict_proba": predict_proba}


def verified_fast_paths(estimator: Any, probe: np.ndarray) -> dict[str, Predictor]:
    """The fast paths that give exactly what the estimator gives on `probe` rows."""
    candidates = _regressor_paths(estimator) or _logistic_paths(estimator)
    verified: dict[str, Predictor] = {}
    for method, fast in candidates.items():
        try:
            expected = getattr(estimator, method)(probe)
            if np.allclose(fast(probe), expected, rtol=1e-12, atol=1e-12):
                verified[method] = fast
        except Exception:  # noqa: S112 - any doubt means the estimator's own method is used
            continue
    return verified
