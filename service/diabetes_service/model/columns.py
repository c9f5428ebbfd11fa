"""Typed columns: MLflow's column types checked strictly, value by value, and the table a model gets.

A model whose signature holds anything but required doubles (a `string`, `long`, `integer`,
`boolean`, `datetime` or optional column) is scored through a `Table`: the request's values,
checked against their column's type and kept column by column. The pandas DataFrame the model is
fitted on is built from a table only when it is scored, so that requests gathered into one call
(scoring/runner.py) cost one frame, not one each. Every mistake is a `ColumnError` naming the row and the
column; the core words it as its own ScoringError.

The checks are strict, as a typed signature promises: a long takes JSON integers (not 1.5, not
"1"), a boolean JSON booleans, a string JSON strings, a datetime an ISO 8601 string, a double any
finite number; null only where the column is optional (`"required": false` in the signature).
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The types served as a float matrix when every column is one of them and required.
NUMERIC_TYPES = frozenset({"double", "float"})
INTEGER_RANGES = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
# MLflow column types to the dtype of the column the model gets (pandas reads the rest itself).
DTYPES = {"double": "float64", "float": "float32", "long": "int64", "integer": "int32", "boolean": "bool"}


class ColumnError(ValueError):
    """One value that does not fit its column: `problem`, in row `row` of column `column` (an index)."""

    def __init__(self, problem: str, row: int, column: int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.row = row
        self.column = column


def _double(value: Any) -> float:
    if type(value) is float:
        if math.isfinite(value):
            return value
        raise _Bad("must be a finite number (NaN and infinity are not allowed)")
    if type(value) is int:
        return float(value)
    raise _Bad(f"must be a number, not {_kind(value)}")


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if type(value) is not int:
            raise _Bad(f"must be an integer, not {_kind(value)}")
        if not low <= value <= high:
            raise _Bad(f"must be an integer between {low} and {high}")
        return value

    return check


def _boolean(value: Any) -> bool:
    if type(value) is not bool:
        raise _Bad(f"must be a boolean (true or false), not {_kind(value)}")
    return value


def _string(value: Any) -> str:
    if type(value) is not str:
        raise _Bad(f"must be a string, not {_kind(value)}")
    return value


def _datetime(value: Any) -> datetime:
    if type(value) is not str:
        raise _Bad(f"must be an ISO 8601 date-time string, not {_kind(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad("must be an ISO 8601 date-time, e.g. 2024-05-01T13:45:00") from None
    # pandas' datetime64 columns are naive: an offset is turned into UTC first.
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _binary(value: Any) -> bytes:
    if type(value) is not str:
        raise _Bad(f"must be a base64 string, not {_kind(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad("must be base64") from None


CHECKS: dict[str, Callable[[Any], Any]] = {
    "double": _double,
    "float": _double,
    "long": _integer(*INTEGER_RANGES["long"]),
    "integer": _integer(*INTEGER_RANGES["integer"]),
    "boolean": _boolean,
    "string": _string,
    "datetime": _datetime,
    "binary": _binary,
}
# The JSON value each type takes as it comes: a column of these needs no per-value conversion.
_AS_IS: dict[str, type] = {"string": str, "boolean": bool, "long": int, "double": float, "float": float}


class _Bad(ValueError):
    pass


def _kind(value: Any) -> str:
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


_KINDS = {str: "a string", bool: "a boolean", int: "an integer", float: "a number", list: "a list", dict: "an object"}


@dataclass(frozen=True)
class ColumnType:
    """One column of the signature: its MLflow type and whether null is allowed."""

    type: str
    optional: bool = False

    def check(self, values: Sequence[Any], column: int) -> list[Any]:
        """`values` checked and converted (datetimes parsed, integers as doubles); a mistake raises ColumnError."""
        as_is = _AS_IS.get(self.type)
        if (
            as_is is not None
            and all(type(value) is as_is for value in values)
            and (as_is is not float or all(map(math.isfinite, values)))
        ):
            return list(values)  # the common case: nothing to convert
        check = CHECKS.get(self.type, _string)
        out: list[Any] = []
        for row, value in enumerate(values):
            if value is None:
                if not self.optional:
                    raise ColumnError("must not be null (the column is required)", row, column)
                out.append(None)
                continue
            try:
                out.append(check(value))
            except _Bad as exc:
                raise ColumnError(str(exc), row, column) from None
        return out


def is_typed(types: Sequence[ColumnType]) -> bool:
    """Whether a signature needs typed columns: anything but required doubles and floats."""
    return any(t.type not in NUMERIC_TYPES or t.optional for t in types)


@dataclass(frozen=True)
class Table:
    """Checked columns in feature order, one list of values each, all of `rows` values."""

    columns: tuple[list[Any], ...]
    rows: int

    def __len__(self) -> int:
        return self.rows

    @staticmethod
    def concat(tables: Sequence[Table]) -> Table:
        """Tables one after the other (a gathered batch): one frame is built for all of them."""
        width = len(tables[0].columns)
        columns = tuple([value for table in tables for value in table.columns[i]] for i in range(width))
        return Table(columns, sum(table.rows for table in tables))

    def head(self, rows: int) -> Table:
        return Table(tuple(column[:rows] for column in self.columns), min(rows, self.rows))


def frame(names: Sequence[str], types: Sequence[ColumnType], columns: Sequence[Sequence[Any]]) -> Any:
    """The pandas DataFrame the model gets: the signature's names, and the dtypes MLflow's own
    schema enforcement gives those types (a column holding nulls keeps pandas' own dtype: NaN
    for numbers, None for the rest, as a model's imputer expects)."""
    import pandas as pd

    data: dict[str, Any] = {}
    for name, column_type, values in zip(names, types, columns, strict=True):
        dtype = DTYPES.get(column_type.type)
        if column_type.type == "datetime":
            data[name] = pd.Series(pd.to_datetime(values), dtype="datetime64[ns]")
        elif dtype is not None and not (column_type.optional and None in values):
            data[name] = pd.Series(values, dtype=dtype)
        elif dtype is not None and column_type.type != "boolean":
            data[name] = pd.Series(values, dtype="float64")  # nulls of a number column are NaN
        else:
            data[name] = pd.Series(values, dtype=object if column_type.type in ("boolean", "binary") else None)
    return pd.DataFrame(data)
