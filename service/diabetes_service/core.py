"""The scoring core: one loaded model, its features and methods. Knows nothing of HTTP.

Protocol adapters turn wire formats into rows (lists in feature order, or feature-keyed dicts)
or straight into a float matrix, call `score`, and turn the result back into their own format.
Every caller mistake found here is an `InvalidInput` naming the field and the problem.
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diabetes_service.linear import answers_agree, compile_verified
from diabetes_service.loading import Feature, LoadedModel

METHODS = ("predict", "predict_proba")

log = logging.getLogger("diabetes_service")

# Above these, a prediction runs in a thread: the event loop keeps accepting and answering probes
# (and a SIGTERM finds every waiting request already in flight). Below, a thread hop costs more
# than the prediction itself.
SLOW_CALL_SECONDS = 0.002
SLOW_ROW_COUNT = 2000
# Requests are gathered into one call (runner.py) for models whose call costs more than this
# (scikit-learn's own checks); a model slower than the second bound is not probed row by row.
GATHER_CALL_SECONDS = 50e-6
GATHER_PROBE_LIMIT_SECONDS = 0.05


class InvalidInput(Exception):
    """A caller mistake. `field` locates it (e.g. `data[3][2]`); `status` is the suggested HTTP code."""

    def __init__(self, message: str, field: str | None = None, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.status = status


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    sha256: str | None = None  # of the artifact file, where known

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """What every answer this model gave says of it."""
        return [(b"x-model-name", self.name.encode()), (b"x-model-version", self.version.encode())]


def probe_rows(example_rows: Sequence[Sequence[float]], width: int) -> np.ndarray:
    """The input example and a few rows around zero: what a compiled model must answer alike."""
    rng = np.random.default_rng(0)
    return np.vstack([np.asarray(example_rows, dtype=np.float64), rng.normal(0.0, 0.1, size=(8, width))])


class ScoringCore:
    def __init__(self, loaded: LoadedModel, identity: ModelIdentity, *, max_rows: int) -> None:
        self.estimator = loaded.estimator
        # A compiled linear model keeps the name of the scikit-learn class it came from.
        self.model_class: str = getattr(self.estimator, "estimator_name", type(self.estimator).__name__)
        self.identity = identity
        self.features: tuple[Feature, ...] = loaded.features
        self.feature_names = tuple(feature.name for feature in self.features)
        self._feature_index = {name: i for i, name in enumerate(self.feature_names)}
        self.max_rows = max_rows
        self.methods = tuple(m for m in METHODS if callable(getattr(self.estimator, m, None)))
        # Azure ML's no-code scoring: predict_proba where the model has it, else predict.
        self.default_method = "predict_proba" if "predict_proba" in self.methods else "predict"
        self.example_rows = loaded.input_example or [[0.0] * len(self.features)]
        self.slow_seconds_per_call = 0.0
        self.gathers = False
        self._predictors: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            method: getattr(self.estimator, method) for method in self.methods
        }
        # Scikit-learn warns on every call when an estimator fitted on a DataFrame gets an array;
        # the core has already matched the columns by name, so the warning says nothing here.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")

    @property
    def n_features(self) -> int:
        return len(self.features)

    def warm_up(self) -> None:
        """Score probe rows once per method, then switch to the compiled form where it agrees."""
        probe = probe_rows(self.example_rows, self.n_features)
        for method in self.methods:
            self._predictors[method](probe)
        compiled = compile_verified(self.estimator, probe)
        if compiled is not None:
            self._predictors = {method: getattr(compiled, method) for method in self.methods}
        started = time.perf_counter()
        for method in self.methods:
            self._predictors[method](probe[:1])
        self.slow_seconds_per_call = time.perf_counter() - started
        per_call = self.slow_seconds_per_call / len(self.methods)
        self.gathers = GATHER_CALL_SECONDS < per_call < GATHER_PROBE_LIMIT_SECONDS and self._rows_independent(probe[:4])

    def _rows_independent(self, probe: np.ndarray) -> bool:
        """Whether rows scored together get the answers they get alone: then gathering is invisible."""
        try:
            for method in self.methods:
                predict = self._predictors[method]
                alone = np.concatenate([predict(probe[i : i + 1]) for i in range(len(probe))])
                if not answers_agree(predict(probe), alone):
                    return False
            return True
        except Exception:  # any doubt: every request gets a call of its own
            return False

    def blocks(self, rows: int) -> bool:
        """Whether scoring `rows` rows takes long enough to keep off the event loop."""
        return self.slow_seconds_per_call > SLOW_CALL_SECONDS or rows > SLOW_ROW_COUNT

    def choose_method(self, method: str | None) -> str:
        if method is None:
            return self.default_method
        if method not in METHODS:
            raise InvalidInput(f"unknown method; use one of {', '.join(METHODS)}", field="method")
        if method not in self.methods:
            raise InvalidInput(
                f"{method} is not available for this model ({self.model_class}); available: {', '.join(self.methods)}",
                field="method",
            )
        return method

    def check_row_count(self, count: int, field: str = "data") -> None:
        if count == 0:
            raise InvalidInput("must hold at least one row", field=field)
        if count > self.max_rows:
            raise InvalidInput(
                f"{count} rows is over the limit of {self.max_rows} rows per request; split the request",
                field=field,
                status=413,
            )

    def matrix(self, rows: Sequence[Sequence[float] | Mapping[str, float]], field: str = "data") -> np.ndarray:
        """Rows of already-validated finite numbers to an (n_rows, n_features) float matrix."""
        self.check_row_count(len(rows), field)
        width = self.n_features
        try:  # rows that are all lists of the right length: numpy reads them in one go
            matrix = np.array(rows, dtype=np.float64)
            if matrix.ndim == 2 and matrix.shape[1] == width:
                return matrix
        except (TypeError, ValueError):  # objects, or lists of different lengths: row by row below
            pass
        ordered: list[Sequence[float]] = []
        for i, row in enumerate(rows):
            # Lists first: an isinstance check against the Mapping ABC costs more than the list check.
            if isinstance(row, list | tuple):
                if len(row) != width:
                    raise InvalidInput(f"has {len(row)} values, expected {width} ({self._names()})", f"{field}[{i}]")
                ordered.append(row)
            elif isinstance(row, Mapping):
                ordered.append(self._ordered(row, f"{field}[{i}]"))
            else:
                raise InvalidInput("must be a list of values or an object keyed by feature name", f"{field}[{i}]")
        return np.array(ordered, dtype=np.float64)

    def _ordered(self, row: Mapping[str, float], field: str) -> list[float]:
        unknown = [key for key in row if key not in self._feature_index]
        if unknown:
            raise InvalidInput(f"unknown feature {unknown[0]!r}; expected {self._names()}", field)
        missing = [name for name in self.feature_names if name not in row]
        if missing:
            raise InvalidInput(f"missing feature {missing[0]!r}", field)
        return [row[name] for name in self.feature_names]

    def _names(self) -> str:
        return ", ".join(self.feature_names)

    def predict(self, matrix: np.ndarray, method: str, field: str = "data") -> np.ndarray:
        """Run `method` (already chosen with `choose_method`) on a validated matrix."""
        try:
            result = self._predictors[method](matrix)
        except ValueError as exc:
            # Finite doubles of the right shape that the model still refuses, e.g. a scaler's
            # output overflowing: the values' fault, not the service's. Its words stay in the log,
            # since a model's own message may quote the input.
            log.warning("the model refused a request's values: %s", exc)
            raise InvalidInput(
                "the model cannot score these values (out of the range it handles)", field, status=422
            ) from None
        # Finite inputs far outside the training range can overflow; answering null would be a silent wrong answer.
        if result.dtype.kind == "f" and not _all_finite(result):
            row = int(np.argwhere(~np.isfinite(result))[0][0])
            raise InvalidInput(
                "the model's output is not finite for this row: its values are out of range", f"{field}[{row}]"
            )
        # Classifiers trained on boolean labels predict booleans; the protocol promises numbers.
        return result.astype(np.int64) if result.dtype.kind == "b" else result

    def score(self, rows: Sequence[Sequence[float] | Mapping[str, float]], method: str | None) -> list[Any]:
        chosen = self.choose_method(method)
        return self.predict(self.matrix(rows), chosen).tolist()


def _all_finite(values: np.ndarray) -> bool:
    flat = values.ravel()
    # One dot product costs a third of isfinite().all() on a few values: a NaN or an infinity makes
    # it non-finite, and so can huge finite values, which the exact check then clears.
    return math.isfinite(flat.dot(flat)) or bool(np.isfinite(flat).all())
