"""Typed pipelines compiled to their arithmetic: one-hot encoding, scaling and a linear model.

The most common mixed-type model is a `Pipeline` of a `ColumnTransformer` (a `OneHotEncoder` on
string columns, a `StandardScaler` on numbers, the rest passed through or dropped) and a linear
model. Served by scikit-learn, a 1-row call builds a DataFrame and runs every transformer's
validation: milliseconds for microseconds of arithmetic. Its answer is a sum: each string column's
category picks one coefficient, each number is centred and scaled. This module computes that sum
from the core's checked `Table` (model/columns.py) directly (no DataFrame, no scikit-learn call), and, like the
numeric compiler (`linear`), is used only after it gave the estimator's own answers on probe rows:
the model's input example, each known category in turn, and an unseen one. Anything else
(another transformer, nulls, a dropped category, infrequent categories) is served by the
estimator itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from diabetes_client.schema import METHODS
from diabetes_service.model.columns import ColumnType, Table, frame
from diabetes_service.model.compile.linear import CompiledModel, _compile, answers_agree

# A string no encoder was fitted on: what an unseen category is probed with.
UNSEEN = "\x00unseen category"


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


class EncodedLinear:
    """`Pipeline([ColumnTransformer, linear model])` on a Table: the encoded matrix, then the
    compiled linear model's methods."""

    def __init__(self, one_hots: list[OneHot], numbers: list[Numbers], width: int, linear: CompiledModel) -> None:
        self.one_hots = one_hots
        self.numbers = numbers
        self.width = width
        self.linear = linear
        self.estimator_name = "Pipeline"
        self.classes_ = getattr(linear, "classes_", None)
        for method in METHODS:
            if hasattr(linear, method):
                setattr(self, method, self._method(getattr(linear, method)))

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
        compiled = _compile_pipeline(estimator, list(names), types)
        if compiled is None:
            return None
        rows = _probe_rows(compiled, probe)
        given = frame(names, types, rows.columns)
        for method in METHODS:
            if hasattr(estimator, method) != hasattr(compiled, method):
                return None
            if hasattr(compiled, method):
                theirs = np.asarray(getattr(estimator, method)(given))
                if not answers_agree(getattr(compiled, method)(rows), theirs):
                    return None
        return compiled
    except Exception:  # any doubt: the estimator serves itself
        return None


def _probe_rows(compiled: EncodedLinear, probe: Table) -> Table:
    """The probe's rows, then its first row with each known category of each encoded column, and an unseen one."""
    columns = [list(column) for column in probe.columns]
    rows = probe.rows
    for hot in compiled.one_hots:
        for category in [*hot.index, *([UNSEEN] if hot.ignore_unknown else [])]:
            for j, column in enumerate(columns):
                column.append(category if j == hot.column else probe.columns[j][0])
            rows += 1
    return Table(tuple(columns), rows)


def _compile_pipeline(estimator: Any, names: list[str], types: Sequence[ColumnType]) -> EncodedLinear | None:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    # scikit-learn's own classes only: a user's subclass may change the formula.
    if type(estimator) is not Pipeline or len(estimator.steps) != 2:
        return None
    (_, columns), (_, model) = estimator.steps
    linear = _compile(model)
    if type(columns) is not ColumnTransformer or linear is None or any(t.optional for t in types):
        return None
    fitted_names = [str(name) for name in getattr(columns, "feature_names_in_", [])]
    if fitted_names != names:
        return None
    one_hots: list[OneHot] = []
    numbers: list[Numbers] = []
    offset = 0
    for _, step, selected in columns.transformers_:
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
        elif type(step) is OneHotEncoder and step.drop_idx_ is None and not getattr(step, "_infrequent_enabled", False):
            for j, categories in zip(picked, step.categories_, strict=True):
                if types[j].type != "string" or not all(isinstance(c, str) for c in categories):
                    return None
                one_hots.append(
                    OneHot(j, offset, {c: i for i, c in enumerate(categories)}, step.handle_unknown != "error")
                )
                offset += len(categories)
            continue
        else:
            return None
        if any(types[j].type not in ("double", "float", "long", "integer", "boolean") for j in picked):
            return None
        offset += len(picked)
    width = np.shape(getattr(model, "coef_", ()))[-1]
    return EncodedLinear(one_hots, numbers, offset, linear) if width == offset else None
