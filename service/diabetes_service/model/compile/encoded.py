"""Typed pipelines compiled to their arithmetic: one-hot encoding, scaling and a linear model.

The most common mixed-type model is a `Pipeline` of a `ColumnTransformer` (a `OneHotEncoder` on
string columns, a `StandardScaler` on numbers, the rest passed through or dropped) and a linear
model. Served by scikit-learn, a 1-row call builds a DataFrame and runs every transformer's
validation: milliseconds for microseconds of arithmetic. Its answer is a sum: each string column's
category picks one coefficient, each number is centred and scaled. This module computes that sum
from the core's checked `Table` (model/columns.py) directly (no DataFrame, no scikit-learn call), and, like the
numeric compiler (`linear`), is used only after it gave the estimator's own answers on probe rows:
the model's input example, each known category in turn, an unseen one, and each number moved off
the example's value. Anything else (another transformer, optional columns, a dropped category,
infrequent categories) is served by the estimator itself, and `compile_checked` says why.

The preparation child compiles it once and the prepared-model cache keeps it (`save`: the linear
model's own files, linear.npz and linear.json, plus the encoding in front of it: encoded.json for
the one-hot indexes and the categories, encoded.npz for the scalers' arrays), so that the workers
of a typed pipeline load it with numpy alone and never import pandas or scikit-learn, and a restart
starts from the cache instead of preparing it again. The example pipeline (`diabetes train --task
pipeline`) with 2 workers: a process tree of 170 MiB (RSS summed; 587 MiB before) and a restart to
the first answer 1.17x the numeric example's (19.5x before), in the same run of `python -m
loadtests.bench.pipelines` (docs/performance-pipelines.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from diabetes_client.schema import METHODS
from diabetes_service.model.columns import ColumnError, ColumnType, Table, frame, is_typed
from diabetes_service.model.compile import linear
from diabetes_service.model.compile.linear import CompiledModel, _compile, answers_agree
from diabetes_service.model.loading import LoadedModel

# A string no encoder was fitted on: what an unseen category is probed with.
UNSEEN = "\x00unseen category"
ENCODING_FILE = "encoded.json"
SCALERS_FILE = "encoded.npz"
# The column types a scaler or a passthrough takes as numbers (a boolean as 0 or 1).
NUMBER_TYPES = frozenset({"double", "float", "long", "integer", "boolean"})


class Uncovered(Exception):
    """What the compiler does not cover in a model (the model is then served by scikit-learn itself)."""


@dataclass(frozen=True)
class OneHot:
    column: int  # the feature's index in the table
    offset: int  # its first output column
    index: dict[str, int]  # category -> output column, from the offset
    ignore_unknown: bool  # else an unknown category is the model's ValueError, as scikit-learn's


@dataclass(frozen=True)
class Numbers:
    columns: tuple[int, ...]
    offset: int
    mean: np.ndarray | float  # 0.0 where not centred
    scale: np.ndarray | float  # 1.0 where not scaled


@dataclass(eq=False)
class EncodedLinear:
    """`Pipeline([ColumnTransformer, linear model])` on a Table: the encoded matrix, then the
    compiled linear model's methods."""

    one_hots: list[OneHot]
    numbers: list[Numbers]
    width: int
    linear: CompiledModel
    # {column name: its categories}, as model/categories.py reads them off the fitted encoders: the
    # API description's enums, kept with the compiled form since no encoder is loaded beside it.
    known_categories: dict[str, list[str]] = field(default_factory=dict)

    # Scored on the core's checked Table itself: no DataFrame is built for it (scoring/core.py).
    takes_table = True
    estimator_name = "Pipeline"

    def __post_init__(self) -> None:
        self.classes_ = getattr(self.linear, "classes_", None)
        for method in METHODS:
            if hasattr(self.linear, method):
                setattr(self, method, self._method(getattr(self.linear, method)))

    def _method(self, call: Any) -> Any:
        def on_table(table: Table) -> np.ndarray:
            return call(self.encode(table))

        return on_table

    def encode(self, table: Table) -> np.ndarray:
        encoded = np.zeros((table.rows, self.width))
        for step in self.numbers:
            values = np.array([table.columns[j] for j in step.columns], dtype=np.float64).T
            encoded[:, step.offset : step.offset + len(step.columns)] = (values - step.mean) / step.scale
        for hot in self.one_hots:
            for row, value in enumerate(table.columns[hot.column]):
                at = hot.index.get(value)
                if at is not None:
                    encoded[row, hot.offset + at] = 1.0
                elif not hot.ignore_unknown:
                    raise ValueError("a category the encoder does not know (handle_unknown='error')")
        return encoded


def compile_verified(
    estimator: Any, names: Sequence[str], types: Sequence[ColumnType], probe: Table
) -> EncodedLinear | None:
    """The compiled form of `estimator`, if it answers exactly as the estimator on the probe rows."""
    try:
        return compile_checked(estimator, names, types, probe)
    except Uncovered:
        return None


def compile_checked(estimator: Any, names: Sequence[str], types: Sequence[ColumnType], probe: Table) -> EncodedLinear:
    """The compiled form of `estimator`, checked on the probe rows; Uncovered says why there is none."""
    if isinstance(estimator, EncodedLinear):  # loaded compiled from the prepared-model cache
        return estimator
    try:
        compiled = _compile_pipeline(estimator, list(names), types)
        rows = _probe_rows(compiled, probe, types)
        given = frame(names, types, rows.columns)
        for method in METHODS:
            if hasattr(estimator, method) != hasattr(compiled, method):
                raise Uncovered(f"the compiled form would not offer the same methods ({method})")
            if hasattr(compiled, method):
                theirs = np.asarray(getattr(estimator, method)(given))
                if not answers_agree(getattr(compiled, method)(rows), theirs):
                    raise Uncovered(f"its compiled form's {method} differs from scikit-learn's on the probe rows")
        return compiled
    except Uncovered:
        raise
    except Exception as exc:  # any doubt: the estimator serves itself
        raise Uncovered(f"compiling it failed: {type(exc).__name__}: {exc}") from None


def applies(loaded: LoadedModel) -> bool:
    """Whether the model takes typed columns (a Table in the core), the input this form scores; a
    model of doubles only gets a float matrix there, even one that selects its columns by name."""
    return is_typed([ColumnType(feature.type, feature.optional) for feature in loaded.features])


def compile_loaded(loaded: LoadedModel) -> EncodedLinear:
    """The compiled form of a loaded model with typed columns, checked on probe rows from its input
    example (what the preparation child keeps in the cache); Uncovered says why there is none."""
    names = [feature.name for feature in loaded.features]
    types = [ColumnType(feature.type, feature.optional) for feature in loaded.features]
    rows = loaded.input_example
    if not rows:
        raise Uncovered("it has no input example to check a compiled form on")
    try:
        probe = Table(tuple(t.check([row[j] for row in rows], j) for j, t in enumerate(types)), len(rows))
    except (ColumnError, IndexError, TypeError) as exc:
        raise Uncovered(f"its input example does not fit its signature: {exc}") from None
    return compile_checked(loaded.estimator, names, types, probe)


def _probe_rows(compiled: EncodedLinear, probe: Table, types: Sequence[ColumnType]) -> Table:
    """The probe's rows, then its first row with each known category of each encoded column, an
    unseen one, and each number moved off the example's value (a column mapped to the wrong scaler
    then shows, even where the example's rows agree on it)."""
    columns = [list(column) for column in probe.columns]
    rows = probe.rows

    def first_row_with(j: int, value: Any) -> None:
        nonlocal rows
        for k, column in enumerate(columns):
            column.append(value if k == j else probe.columns[k][0])
        rows += 1

    for hot in compiled.one_hots:
        for category in [*hot.index, *([UNSEEN] if hot.ignore_unknown else [])]:
            first_row_with(hot.column, category)
    for step in compiled.numbers:
        for j in step.columns:
            value = probe.columns[j][0]
            if types[j].type == "boolean":
                first_row_with(j, not value)
            else:  # one step towards zero, or away from it: never out of the column's range
                first_row_with(j, value - 1 if value > 0 else value + 1)
    return Table(tuple(columns), rows)


def _compile_pipeline(estimator: Any, names: list[str], types: Sequence[ColumnType]) -> EncodedLinear:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    from diabetes_service.model.categories import known_categories

    # scikit-learn's own classes only: a user's subclass may change the formula.
    if type(estimator) is not Pipeline or len(estimator.steps) != 2:
        raise Uncovered(f"{type(estimator).__name__} is not a Pipeline of a ColumnTransformer and a linear model")
    (_, columns), (_, model) = estimator.steps
    if type(columns) is not ColumnTransformer:
        raise Uncovered(f"its first step is {type(columns).__name__}, not a ColumnTransformer")
    compiled_model = _compile(model)
    if compiled_model is None:
        raise Uncovered(f"its last step, {type(model).__name__}, is not a linear model the compiler knows")
    optional = [name for name, t in zip(names, types, strict=True) if t.optional]
    if optional:
        raise Uncovered(f"column {optional[0]!r} is optional: a null's encoding is left to scikit-learn")
    fitted_names = [str(name) for name in getattr(columns, "feature_names_in_", [])]
    if fitted_names != names:
        raise Uncovered("its ColumnTransformer was fitted on other columns than the signature's, or in another order")
    one_hots: list[OneHot] = []
    numbers: list[Numbers] = []
    offset = 0
    for label, step, selected in columns.transformers_:
        picked = [names.index(s) if isinstance(s, str) else int(s) for s in selected]
        if step == "drop" or not picked:
            continue
        # A fitted remainder="passthrough" is a FunctionTransformer without a function.
        if step == "passthrough" or (type(step) is FunctionTransformer and step.func is None):
            numbers.append(Numbers(tuple(picked), offset, 0.0, 1.0))
        elif type(step) is StandardScaler:
            centred = step.with_mean and step.mean_ is not None
            mean = np.asarray(step.mean_, dtype=np.float64) if centred else 0.0
            scale = 1.0 if step.scale_ is None else np.asarray(step.scale_, dtype=np.float64)
            numbers.append(Numbers(tuple(picked), offset, mean, scale))
        elif type(step) is OneHotEncoder:
            if step.drop_idx_ is not None or getattr(step, "_infrequent_enabled", False):
                raise Uncovered(f"its OneHotEncoder {label!r} drops a category or groups infrequent ones")
            for j, categories in zip(picked, step.categories_, strict=True):
                if types[j].type != "string" or not all(isinstance(c, str) for c in categories):
                    raise Uncovered(f"its OneHotEncoder {label!r} encodes {names[j]!r}, not a column of strings")
                one_hots.append(
                    OneHot(j, offset, {c: i for i, c in enumerate(categories)}, step.handle_unknown != "error")
                )
                offset += len(categories)
            continue
        else:
            kind = step if isinstance(step, str) else type(step).__name__
            raise Uncovered(
                f"its transformer {label!r} is {kind}; compiled are OneHotEncoder, StandardScaler, passthrough, drop"
            )
        not_numbers = [names[j] for j in picked if types[j].type not in NUMBER_TYPES]
        if not_numbers:
            raise Uncovered(f"its transformer {label!r} takes {not_numbers[0]!r}, which is not a number")
        offset += len(picked)
    width = np.shape(getattr(model, "coef_", ()))[-1]
    if width != offset:
        raise Uncovered(f"its columns encode to {offset} values, its model takes {width}")
    return EncodedLinear(one_hots, numbers, offset, compiled_model, known_categories(estimator))


# -- the prepared form ----------------------------------------------------------------------------


def save(compiled: EncodedLinear, folder: Path, meta: dict[str, Any]) -> None:
    """The linear model as linear.save writes it (with `meta`), and the encoding in front of it."""
    linear.save(compiled.linear, folder, meta)
    arrays: dict[str, np.ndarray] = {}
    numbers = []
    for i, step in enumerate(compiled.numbers):
        described: dict[str, Any] = {"columns": list(step.columns), "offset": step.offset}
        for part in ("mean", "scale"):
            value = getattr(step, part)
            if isinstance(value, np.ndarray):
                arrays[f"{part}_{i}"] = value
                described[part] = f"{part}_{i}"
            else:
                described[part] = float(value)
        numbers.append(described)
    one_hots = [
        {
            "column": hot.column,
            "offset": hot.offset,
            "categories": list(hot.index),
            "ignore_unknown": hot.ignore_unknown,
        }
        for hot in compiled.one_hots
    ]
    encoding = {
        "width": compiled.width,
        "one_hots": one_hots,
        "numbers": numbers,
        "categories": compiled.known_categories,
    }
    np.savez(folder / SCALERS_FILE, **arrays)
    (folder / ENCODING_FILE).write_text(json.dumps(encoding))


def is_encoded(folder: Path) -> bool:
    return (folder / ENCODING_FILE).is_file()


def load(folder: Path, compiled_model: CompiledModel) -> EncodedLinear:
    """The encoding `save` wrote in `folder`, in front of its linear model (read by linear.load)."""
    encoding = json.loads((folder / ENCODING_FILE).read_text())
    with np.load(folder / SCALERS_FILE, allow_pickle=False) as arrays:

        def value(described: float | str) -> np.ndarray | float:
            return arrays[described] if isinstance(described, str) else float(described)

        numbers = [
            Numbers(tuple(step["columns"]), step["offset"], value(step["mean"]), value(step["scale"]))
            for step in encoding["numbers"]
        ]
    one_hots = [
        OneHot(hot["column"], hot["offset"], {c: i for i, c in enumerate(hot["categories"])}, hot["ignore_unknown"])
        for hot in encoding["one_hots"]
    ]
    return EncodedLinear(one_hots, numbers, encoding["width"], compiled_model, encoding["categories"])
