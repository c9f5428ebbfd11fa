"""Turning whatever rows the caller has into plain JSON-ready rows, without importing numpy or pandas.

numpy arrays and pandas DataFrames are recognised by what they can do (``tolist``, ``to_dict`` and
``columns``), not by importing their libraries, so that the client imports and runs without them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from diabetes_client.errors import InvalidInputError

PlainRow = list[Any] | dict[str, Any]


def to_plain_rows(rows: Any) -> list[PlainRow]:
    """Rows as a list of lists (values in feature order) or of dicts (keyed by feature name).

    Accepts a list (or any iterable) of sequences or mappings, a 2-D numpy array, or a pandas
    DataFrame (sent keyed by column name when its columns are names, by position otherwise).
    Values are left for the shared schema to judge, so that the caller gets the same message the
    service would give.
    """
    if isinstance(rows, (str, bytes, Mapping)):
        raise InvalidInputError("rows must be a sequence of rows (lists or feature-keyed objects)", field="data")
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        return _dataframe_rows(rows)
    if hasattr(rows, "tolist") and getattr(rows, "ndim", 2) != 2:
        raise InvalidInputError(f"an array of rows must have 2 dimensions, this one has {rows.ndim}", field="data")
    listed = rows.tolist() if hasattr(rows, "tolist") else rows
    try:
        iterator = iter(listed)
    except TypeError:
        raise InvalidInputError("rows must be a sequence of rows (lists or feature-keyed objects)") from None
    return [_plain_row(row) for row in iterator]


def _dataframe_rows(frame: Any) -> list[PlainRow]:
    columns = list(frame.columns)
    if all(isinstance(column, str) for column in columns):
        # pandas boxes values as Python scalars here, so they serialise as JSON numbers (its
        # Timestamps as ISO 8601, its missing values, NaN or NaT, as null).
        records = frame.to_dict(orient="records")
        return [{key: _frame_value(value) for key, value in record.items()} for record in records]
    return [list(row) for row in frame.to_numpy().tolist()]


def _frame_value(value: Any) -> Any:
    # NaN and NaT are the only values unequal to themselves: a DataFrame's missing value.
    return None if value is not None and value != value else _plain_value(value)


def _plain_row(row: Any) -> PlainRow | Any:
    if isinstance(row, Mapping):
        return {str(key): _plain_value(value) for key, value in row.items()}
    if isinstance(row, (str, bytes)):
        return row  # the schema refuses it, naming the row
    if hasattr(row, "tolist"):
        row = row.tolist()
    if isinstance(row, (list, tuple)):
        return [_plain_value(value) for value in row]
    return row  # a bare number or anything else: the schema refuses it, naming the row


def _plain_value(value: Any) -> Any:
    # A date-time column's values as ISO 8601 (pandas' Timestamp is a datetime too).
    if isinstance(value, date):
        return value.isoformat()
    # A numpy scalar knows how to become a Python one; anything else is judged by the schema.
    if hasattr(value, "item") and not isinstance(value, (list, tuple, dict)):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value
