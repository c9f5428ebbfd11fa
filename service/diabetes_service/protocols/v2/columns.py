"""V2 tensors as typed columns: which V2 datatypes each MLflow column type takes, and a tensor's values.

A model with typed columns (strings, integers, booleans, datetimes, optional columns) takes one V2
input per column, named by the column, of shape `[N]` or `[N, 1]`, as pandas-style V2 clients send
a DataFrame (MLServer's PandasCodec, tritonclient with one input per column):

| column type        | V2 datatypes                                   |
|--------------------|------------------------------------------------|
| string             | BYTES (UTF-8 text)                             |
| datetime           | BYTES (ISO 8601 text)                          |
| binary             | BYTES (base64 text, as on the other protocols) |
| boolean            | BOOL                                           |
| long, integer      | any integer datatype (INT64, INT32...)         |
| double, float      | FP64, FP32, FP16 or any integer datatype       |

The datatype is checked here; the values are then checked by the core's typed path
(`ScoringCore.typed_columns`), with the same strict rules as every other protocol. A null is
only in a JSON BYTES tensor; in a float tensor of an optional column NaN is the missing value.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diabetes_service.model.columns import ColumnType
from diabetes_service.scoring.core import ScoringError

_INTEGERS = ("INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8")
_FLOATS = ("FP64", "FP32", "FP16")
# What each column type takes, the first being what the model metadata announces.
ACCEPTED: dict[str, tuple[str, ...]] = {
    "string": ("BYTES",),
    "datetime": ("BYTES",),
    "binary": ("BYTES",),
    "boolean": ("BOOL",),
    "long": _INTEGERS,
    "integer": ("INT32", *(t for t in _INTEGERS if t != "INT32")),
    "double": (*_FLOATS, *_INTEGERS),
    "float": ("FP32", "FP64", "FP16", *_INTEGERS),
}
# MLServer's content types for the columns whose datatype alone does not say how to read them.
CONTENT_TYPES = {"string": "str", "datetime": "datetime", "binary": "base64"}


def accepted(column: ColumnType) -> tuple[str, ...]:
    return ACCEPTED.get(column.type, ("BYTES",))


def metadata_input(name: str, column: ColumnType) -> dict[str, Any]:
    """A column's entry in the model metadata's inputs."""
    parameters: dict[str, Any] = {"mlflow_type": column.type, "optional": column.optional}
    if column.type in CONTENT_TYPES:
        parameters["content_type"] = CONTENT_TYPES[column.type]
    return {"name": name, "datatype": accepted(column)[0], "shape": [-1], "parameters": parameters}


def column_values(column: ColumnType, name: str, datatype: str, data: np.ndarray, field: str) -> list[Any]:
    """A `[N]` or `[N, 1]` tensor for column `name` as a list of Python values for the core to check."""
    allowed = accepted(column)
    if datatype not in allowed:
        raise ScoringError(
            f"datatype {datatype} does not fit column {name!r} ({column.type}); send {' or '.join(allowed[:2])}",
            f"{field}.datatype",
        )
    if data.ndim == 2 and data.shape[1] == 1:
        data = data[:, 0]
    if data.ndim != 1:
        raise ScoringError(f"has shape {list(data.shape)}; a column's tensor is [N] or [N, 1]", f"{field}.shape")
    if column.optional and data.dtype.kind == "f":
        # NaN is how pandas and numpy say "missing": the null an optional column takes.
        return [None if value != value else value for value in data.tolist()]
    return data.tolist()
