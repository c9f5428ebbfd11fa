"""The scoring core: one loaded model, its features and methods. Knows nothing of HTTP.

Protocol adapters turn wire formats into rows (lists in feature order, feature-keyed dicts, or
named columns), get the model's input from `matrix`, `frame_matrix`, `column_matrix` (alias
`typed_columns`) or `checked`, and turn the predictions back into their own format. For a model
whose signature is all required doubles that input is a float matrix, checked for shape and
finiteness (the fast path); for any other signature (strings, integers, booleans, datetimes,
optional columns) it is a `Table` (model/columns.py) checked value by value against each column's
type, which becomes the DataFrame the model was fitted on only when it is scored. Every caller
mistake found here is a `ScoringError`: what is wrong and where, with a kind that each protocol
maps to its own status; no HTTP here.

Before it serves, `warm_up` scores probe rows (model/probes.py; the input example for typed
columns) with every method, switches to a compiled form (model/compile/) where one gives the
estimator's answers, and times a call: the runner (scoring/runner.py) gathers requests into one
call for models slow enough, and runs slow calls in a thread.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diabetes_client.schema import METHODS, PREDICT, PREDICT_PROBA
from diabetes_service.model.categories import known_categories
from diabetes_service.model.columns import ColumnError, ColumnType, Table, frame, is_typed
from diabetes_service.model.compile import encoded
from diabetes_service.model.compile.linear import answers_agree, compile_verified
from diabetes_service.model.loading import Feature, LoadedModel
from diabetes_service.model.probes import probe_rows
from diabetes_service.model.pyfunc import PyfuncFacts

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


# What a ScoringError is about: values that cannot be scored, or more rows than one request may hold.
INVALID = "invalid"
TOO_MANY_ROWS = "too_many_rows"


class ScoringError(Exception):
    """A caller mistake: `message` says what is wrong, `field` where (e.g. `data[3][2]`), `kind` which
    family (INVALID, TOO_MANY_ROWS) so that each protocol picks its own status and body."""

    def __init__(self, message: str, field: str | None = None, kind: str = INVALID) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.kind = kind


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    version: str
    sha256: str | None = None  # of the artifact file, where known

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """What every answer this model gave says of it."""
        return [(b"x-model-name", self.name.encode()), (b"x-model-version", self.version.encode())]


# What the model is given: a checked float matrix, or a checked Table of typed columns.
ModelInput = np.ndarray | Table


class ScoringCore:
    def __init__(
        self, loaded: LoadedModel, identity: ModelIdentity, *, max_rows: int, pyfunc: PyfuncFacts | None = None
    ) -> None:
        self.estimator = loaded.estimator
        # A compiled linear model keeps the name of the scikit-learn class it came from.
        self.model_class: str = getattr(self.estimator, "estimator_name", type(self.estimator).__name__)
        self.identity = identity
        self.features: tuple[Feature, ...] = loaded.features
        self.feature_names = tuple(feature.name for feature in self.features)
        self.feature_index = {name: i for i, name in enumerate(self.feature_names)}
        self.max_rows = max_rows
        self.methods = tuple(m for m in METHODS if callable(getattr(self.estimator, m, None)))
        # Azure ML's no-code scoring: predict_proba where the model has it, else predict.
        self.default_method = PREDICT_PROBA if PREDICT_PROBA in self.methods else PREDICT
        # What MLflow's pyfunc flavor calls (MLflow's scoring server, Azure ML's MLflow scoring script).
        self.pyfunc = pyfunc or PyfuncFacts()
        self.pyfunc_method = self.pyfunc.predict_fn if self.pyfunc.predict_fn in self.methods else PREDICT
        self.column_types = tuple(ColumnType(f.type, f.optional) for f in self.features)
        # Anything but required doubles: every value checked against its column, a DataFrame for the model.
        self.typed = is_typed(self.column_types)
        # A DataFrame for the model (typed, or selecting its columns by name; warm_up finds out), unless
        # it scores the checked Table itself (a typed pipeline compiled ahead: no pandas in the worker).
        self.frame_input = self.typed and not getattr(self.estimator, "takes_table", False)
        self.example_rows: list[list[Any]] = loaded.input_example or [[0.0] * len(self.features)]
        # The class labels, in the order of predict_proba's and decision_function's columns.
        classes = getattr(self.estimator, "classes_", None)
        self.classes: list[Any] | None = None if classes is None else np.asarray(classes).tolist()
        # The same as JSON text: what a protocol whose parameters hold only scalars (V2) says.
        self.classes_json = None if self.classes is None else json.dumps(self.classes)
        # The categories its encoders know, by column, for the API description (never a validation rule).
        self.categories: dict[str, list[str]] = known_categories(self.estimator) if self.typed else {}
        self.slow_seconds_per_call = 0.0
        self.gathers = False
        # Rows scored together get their answers alone (probed at warm-up): the shadow copies batch then.
        self.rows_independent = False
        self.compiled: Any = None
        self._predictors: dict[str, Callable[[Any], np.ndarray]] = {
            method: self._caller(method) for method in self.methods
        }
        # Scikit-learn warns on every call when an estimator fitted on a DataFrame gets an array;
        # the core has already matched the columns by name, so the warning says nothing here.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")

    @property
    def n_features(self) -> int:
        return len(self.features)

    def _caller(self, method: str) -> Callable[[Any], np.ndarray]:
        """The estimator's `method` on the core's input: as it is (the fast path), or as a DataFrame."""
        call = getattr(self.estimator, method)
        if not self.frame_input:
            return call
        names, types = self.feature_names, self.column_types

        def on_frame(given: ModelInput) -> np.ndarray:
            columns = given.columns if isinstance(given, Table) else given.T.tolist()
            return np.asarray(call(frame(names, types, columns)))

        return on_frame

    def _probe(self) -> ModelInput:
        if not self.typed:
            return probe_rows(self.example_rows, self.n_features)
        example = self.matrix([list(row) for row in self.example_rows] * 4, "input example")
        return example

    def warm_up(self) -> None:
        """Score probe rows once per method, then switch to the compiled form where it agrees."""
        probe = self._probe()
        try:
            for method in self.methods:
                self._predictors[method](probe)
        except Exception:
            if self.frame_input:
                raise
            # Fitted on a DataFrame and selecting its columns by name: it needs the frame.
            self.frame_input = True
            self._predictors = {method: self._caller(method) for method in self.methods}
            for method in self.methods:
                self._predictors[method](probe)
        compiled: Any = None if self.frame_input else compile_verified(self.estimator, probe)
        if self.typed and isinstance(probe, Table):
            # A pipeline of encoders and a linear model: its arithmetic on the table, no DataFrame.
            compiled = encoded.compile_verified(self.estimator, self.feature_names, self.column_types, probe)
        self.compiled = compiled  # what serves instead of the estimator, if anything
        if compiled is not None:
            self._predictors = {method: getattr(compiled, method) for method in self.methods}
        started = time.perf_counter()
        for method in self.methods:
            self._predictors[method](_head(probe, 1))
        self.slow_seconds_per_call = time.perf_counter() - started
        per_call = self.slow_seconds_per_call / len(self.methods)
        self.rows_independent = per_call < GATHER_PROBE_LIMIT_SECONDS and self._rows_independent(_head(probe, 4))
        self.gathers = per_call > GATHER_CALL_SECONDS and self.rows_independent

    def _rows_independent(self, probe: ModelInput) -> bool:
        """Whether rows scored together get the answers they get alone: then gathering is invisible."""
        try:
            for method in self.methods:
                predict = self._predictors[method]
                alone = np.concatenate([predict(_row(probe, i)) for i in range(len(probe))])
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
            raise ScoringError(f"unknown method; use one of {', '.join(METHODS)}", field="method")
        if method not in self.methods:
            raise ScoringError(
                f"{method} is not available for this model ({self.model_class}); available: {', '.join(self.methods)}",
                field="method",
            )
        return method

    def check_row_count(self, count: int, field: str = "data") -> None:
        if count == 0:
            raise ScoringError("must hold at least one row", field=field)
        if count > self.max_rows:
            raise ScoringError(
                f"{count} rows is over the limit of {self.max_rows} rows per request; split the request",
                field=field,
                kind=TOO_MANY_ROWS,
            )

    def matrix(
        self, rows: Sequence[Sequence[Any] | Mapping[str, Any]], field: str = "data", *, extra_columns: bool = False
    ) -> ModelInput:
        """Rows (lists in feature order, or objects keyed by feature name) to a checked float matrix
        (or, for a typed signature, a checked Table).

        With `extra_columns`, keys the model does not use are dropped (as MLflow's schema enforcement does)."""
        self.check_row_count(len(rows), field)
        width = self.n_features
        if self.typed:
            return self._table_of_rows(rows, field, extra_columns)
        try:  # rows that are all lists of the right length: numpy reads them in one go
            matrix = np.array(rows, dtype=np.float64)
            if matrix.ndim == 2 and matrix.shape[1] == width:
                return self._finite(matrix, field)  # shape and row count known good
        except (TypeError, ValueError):  # objects, lists of different lengths, non-numbers: row by row below
            pass
        ordered: list[Sequence[float]] = []
        for i, row in enumerate(rows):
            # Lists first: an isinstance check against the Mapping ABC costs more than the list check.
            if isinstance(row, list | tuple):
                if len(row) != width:
                    raise ScoringError(f"has {len(row)} values, expected {width} ({self._names()})", f"{field}[{i}]")
                ordered.append(row)
            elif isinstance(row, Mapping):
                ordered.append(self._ordered(row, f"{field}[{i}]", extra_columns))
            else:
                raise ScoringError("must be a list of values or an object keyed by feature name", f"{field}[{i}]")
        return self.checked(_float_matrix(ordered, field), field)

    def frame_matrix(
        self, columns: Sequence[str] | None, rows: Sequence[Sequence[Any]], field: str, *, extra_columns: bool = False
    ) -> ModelInput:
        """A table given as column names and rows of values in that order (pandas' "split" layout).

        `columns` left out: the values are in feature order. Columns may come in any order; with
        `extra_columns`, columns the model does not use are dropped (as MLflow's schema enforcement does).
        """
        data_field = f"{field}.data"
        if columns is None or tuple(columns) == self.feature_names:
            return self.matrix(rows, data_field)
        picks = self._column_picks(columns, f"{field}.columns", extra_columns)
        self.check_row_count(len(rows), data_field)
        width = len(columns)
        for i, row in enumerate(rows):
            if not isinstance(row, list | tuple) or len(row) != width:
                found = f"{len(row)} values" if isinstance(row, list | tuple) else "not a list"
                raise ScoringError(f"has {found}, expected one value per column ({width})", f"{data_field}[{i}]")
        if self.typed:
            given = [[row[j] for row in rows] for j in picks]
            return self._table(given, lambda row, i: f"{data_field}[{row}][{picks[i]}]")
        return self.checked(_float_matrix(rows, data_field)[:, picks], data_field)

    def column_matrix(
        self, columns: Mapping[str, Sequence[Any]], field: str, *, extra_columns: bool = False
    ) -> ModelInput:
        """A table given as one list of values per named column (the V2 protocol's one input per
        column, MLflow's `inputs`): a checked float matrix, or a checked Table for a typed signature."""
        picks = self._column_picks(list(columns), field, extra_columns)
        names = list(columns)
        lengths = {len(columns[names[i]]) for i in picks}
        if len(lengths) != 1:
            raise ScoringError("columns must all hold the same number of values", field)
        self.check_row_count(lengths.pop(), field)
        ordered = [columns[names[i]] for i in picks]
        if self.typed:
            return self._table([list(column) for column in ordered], lambda row, i: f"{field}.{names[picks[i]]}[{row}]")
        return self.checked(_float_matrix(ordered, field).T, field)

    # The entry point for protocols that send one typed input per column (Open Inference Protocol V2).
    typed_columns = column_matrix

    def _table_of_rows(self, rows: Sequence[Any], field: str, extra_columns: bool) -> Table:
        width = self.n_features
        keyed = False
        ordered: list[Sequence[Any]] = []
        for i, row in enumerate(rows):
            if isinstance(row, list | tuple):
                if len(row) != width:
                    raise ScoringError(f"has {len(row)} values, expected {width} ({self._names()})", f"{field}[{i}]")
                ordered.append(row)
            elif isinstance(row, Mapping):
                keyed = True
                ordered.append(self._ordered(row, f"{field}[{i}]", extra_columns))
            else:
                raise ScoringError("must be a list of values or an object keyed by feature name", f"{field}[{i}]")
        names = self.feature_names
        columns = [[row[j] for row in ordered] for j in range(width)]
        if keyed:
            return self._table(columns, lambda row, j: f"{field}[{row}].{names[j]}")
        return self._table(columns, lambda row, j: f"{field}[{row}][{j}]")

    def _table(self, columns: list[list[Any]], where: Callable[[int, int], str]) -> Table:
        """Columns in feature order, each checked against its type; `where` names a value's place."""
        checked = []
        for j, (column_type, values) in enumerate(zip(self.column_types, columns, strict=True)):
            try:
                checked.append(column_type.check(values, j))
            except ColumnError as exc:
                feature = self.features[j]
                raise ScoringError(
                    f"{exc.problem} (feature {feature.name}, {_type_name(feature)})", where(exc.row, exc.column)
                ) from None
        return Table(tuple(checked), len(columns[0]) if columns else 0)

    def concat(self, inputs: Sequence[ModelInput]) -> ModelInput:
        """Several requests' inputs as one (a gathered call)."""
        if isinstance(inputs[0], Table):
            return Table.concat(inputs)  # type: ignore[arg-type]
        return np.concatenate(inputs)

    def _column_picks(self, columns: Sequence[str], field: str, extra_columns: bool) -> list[int]:
        """Where each feature stands among `columns`, refusing duplicates, missing and (unless allowed) unknown ones."""
        index: dict[str, int] = {}
        for i, name in enumerate(columns):
            if name in index:
                raise ScoringError(f"column {name!r} is given twice", field)
            index[name] = i
        if not extra_columns:
            unknown = [name for name in columns if name not in self.feature_index]
            if unknown:
                raise ScoringError(f"unknown feature {unknown[0]!r}; expected {self._names()}", field)
        missing = [name for name in self.feature_names if name not in index]
        if missing:
            raise ScoringError(f"missing feature {missing[0]!r}", field)
        return [index[name] for name in self.feature_names]

    def checked(self, matrix: np.ndarray, field: str = "data") -> np.ndarray:
        """The shape and finiteness checks every matrix passes before the model sees it."""
        if matrix.ndim != 2 or matrix.shape[1] != self.n_features:
            raise ScoringError(f"must be rows of {self.n_features} values ({self._names()})", field)
        self.check_row_count(len(matrix), field)
        return self._finite(matrix, field)

    def _finite(self, matrix: np.ndarray, field: str) -> np.ndarray:
        if not _all_finite(matrix):
            row, column = (int(i) for i in np.argwhere(~np.isfinite(matrix))[0])
            raise ScoringError(
                f"must be a finite number (NaN and infinity are not allowed; feature {self.feature_names[column]})",
                f"{field}[{row}][{column}]",
            )
        return matrix

    def _ordered(self, row: Mapping[str, Any], field: str, extra_columns: bool = False) -> list[Any]:
        unknown = [] if extra_columns else [key for key in row if key not in self.feature_index]
        if unknown:
            raise ScoringError(f"unknown feature {unknown[0]!r}; expected {self._names()}", field)
        missing = [name for name in self.feature_names if name not in row]
        if missing:
            raise ScoringError(f"missing feature {missing[0]!r}", field)
        return [row[name] for name in self.feature_names]

    def _names(self) -> str:
        return ", ".join(self.feature_names)

    def predict(self, matrix: ModelInput, method: str, field: str = "data") -> np.ndarray:
        """Run `method` (already chosen with `choose_method`) on a validated matrix or table."""
        try:
            result = self._predictors[method](matrix)
        except ValueError as exc:
            # Finite doubles of the right shape that the model still refuses, e.g. a scaler's
            # output overflowing: the values' fault, not the service's. Its words stay in the log,
            # since a model's own message may quote the input.
            log.warning("the model refused a request's values: %s", exc)
            raise ScoringError("the model cannot score these values (out of the range it handles)", field) from None
        # Finite inputs far outside the training range can overflow; answering null would be a silent wrong answer.
        if result.dtype.kind == "f" and not _all_finite(result):
            row = int(np.argwhere(~np.isfinite(result))[0][0])
            raise ScoringError(
                "the model's output is not finite for this row: its values are out of range", f"{field}[{row}]"
            )
        # The model's own labels (numbers, strings, booleans), as MLflow answers them.
        return result

    def score(self, rows: Sequence[Sequence[Any] | Mapping[str, Any]], method: str | None) -> list[Any]:
        chosen = self.choose_method(method)
        return self.predict(self.matrix(rows), chosen).tolist()


def _row(given: ModelInput, i: int) -> ModelInput:
    if isinstance(given, Table):
        return Table(tuple(column[i : i + 1] for column in given.columns), 1)
    return given[i : i + 1]


def _head(given: ModelInput, rows: int) -> ModelInput:
    return given.head(rows) if isinstance(given, Table) else given[:rows]


def _type_name(feature: Feature) -> str:
    return f"optional {feature.type}" if feature.optional else feature.type


def _float_matrix(rows: Sequence[Sequence[Any]], field: str) -> np.ndarray:
    """Rows of equal length to floats; a value that is not a number is named by its place."""
    try:
        return np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):
        for i, row in enumerate(rows):
            for j, value in enumerate(row):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ScoringError("must be a number", f"{field}[{i}][{j}]") from None
        raise ScoringError("must be rows of numbers", field) from None


def _all_finite(values: np.ndarray) -> bool:
    flat = values.ravel()
    # One dot product costs a third of isfinite().all() on a few values: a NaN or an infinity makes
    # it non-finite, and so can huge finite values, which the exact check then clears.
    return math.isfinite(flat.dot(flat)) or bool(np.isfinite(flat).all())
