"""The model's signature against Arrow columns: which column types a feature takes, and each column's
values in the form the scoring core checks.

The core checks values as JSON gives them (model/columns.py). A file's columns are turned into that
form and nothing more, so that every value passes the service's own checks and a value the service
refuses is refused here with the same words: integers stay integers (a `double` feature takes them,
as JSON integers), timestamps become ISO 8601 strings, nulls become None. Two allowances a file
needs and JSON does not: a `long` feature takes a double column whose value is whole (pandas writes
integers with nulls as doubles, mlflow #3798), and dictionary-encoded columns are decoded.

A column of a type the feature can never take (strings for a double, numbers for a string) stops
the file before any row is scored: a one-line error naming the file and the column.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from diabetes_batch.errors import BatchError
from diabetes_service.model.loading import Feature


def _plain(arrow_type: pa.DataType) -> pa.DataType:
    return arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_number(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)


TAKES = {
    "double": _is_number,
    "float": _is_number,
    "long": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
    "integer": lambda t: pa.types.is_integer(t) or pa.types.is_floating(t),
    "boolean": pa.types.is_boolean,
    "string": _is_text,
    "datetime": lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t) or _is_text(t),
    "binary": lambda t: _is_text(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t),
}

# What a CSV file's column is read as, for the feature types inference would get wrong ("1" for a
# string feature would be read as a number, an ISO date-time as a timestamp the core then re-parses).
CSV_TYPES = {"string": pa.string(), "boolean": pa.bool_(), "datetime": pa.string(), "binary": pa.string()}


def check_schema(path: str, schema: pa.Schema, features: Sequence[Feature]) -> None:
    """Refuse a file whose column cannot hold its feature's type: the file and column named."""
    for feature in features:
        arrow_type = _plain(schema.field(feature.name).type)
        if pa.types.is_null(arrow_type):
            continue  # all missing: each row is refused (or scored, for an optional feature) by the core
        takes = TAKES.get(feature.type)
        if takes is None or not takes(arrow_type):
            raise BatchError(
                f"{path}: column {feature.name!r} holds {arrow_type},"
                f" which the model's {feature.type} feature cannot take"
            )


def csv_types(features: Sequence[Feature]) -> dict[str, pa.DataType]:
    return {f.name: CSV_TYPES[f.type] for f in features if f.type in CSV_TYPES}


def _decoded(column: pa.Array) -> pa.Array:
    return column.dictionary_decode() if pa.types.is_dictionary(column.type) else column


def float_column(column: pa.Array) -> np.ndarray:
    """A number column as float64, nulls as NaN (which the core's finiteness check refuses, as it
    refuses null in a double feature): the fast path's matrix column."""
    column = _decoded(column)
    if not pa.types.is_float64(column.type):
        column = pc.cast(column, pa.float64(), safe=False)  # as float(value) would: large integers round
    return column.to_numpy(zero_copy_only=False)


def json_values(column: pa.Array, feature: Feature) -> list[Any]:
    """A column's values as JSON would give them to the core, for `feature`'s type."""
    column = _decoded(column)
    arrow_type = column.type
    if pa.types.is_decimal(arrow_type):
        column = pc.cast(column, pa.float64(), safe=False)
    if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
        if pa.types.is_timestamp(arrow_type) and arrow_type.unit == "ns":
            column = pc.cast(column, pa.timestamp("us", arrow_type.tz), safe=False)
        return [None if value is None else value.isoformat() for value in column.to_pylist()]
    values = column.to_pylist()
    if feature.type in ("long", "integer") and pa.types.is_floating(arrow_type):
        return [int(v) if type(v) is float and v.is_integer() else v for v in values]
    return values


def null_or_nonfinite(column: pa.Array, feature: Feature) -> np.ndarray | None:
    """Rows the core will surely refuse for this column (null where required, NaN or infinity in a
    number): set aside before the batch is checked, so that one bad row does not cost its batch a
    second check. Only a shortcut: the core's check decides every row."""
    column = _decoded(column)
    bad = None
    if not feature.optional and column.null_count:
        bad = column.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_floating(column.type):
        values = column.to_numpy(zero_copy_only=False)
        nonfinite = ~np.isfinite(values)
        if feature.optional:  # nulls read as NaN here, and null is allowed
            nonfinite &= ~column.is_null().to_numpy(zero_copy_only=False)
        bad = nonfinite if bad is None else bad | nonfinite
    return bad
