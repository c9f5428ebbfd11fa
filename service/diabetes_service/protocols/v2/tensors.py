"""Open Inference Protocol (V2) tensors to and from numpy, for every V2 transport.

A V2 tensor is a name, a datatype (`FP64`, `INT32`, `BYTES`...), a shape and its elements in
row-major order, carried as a JSON list (flat or nested), as raw little-endian bytes (Triton's
binary extension over REST, `raw_input_contents` over gRPC) or as typed protobuf contents. These
functions turn each into a numpy array of the declared shape, refusing what does not match with
the core's `ScoringError` (what and where), and turn answers back into datatype and bytes.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

from diabetes_service.scoring.core import ScoringError

# V2 datatypes and numpy's, little-endian as both wire forms are.
DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BYTES": np.dtype(object),
}
NUMERIC = frozenset(name for name, dtype in DTYPES.items() if dtype.kind in "iuf")
_BY_KIND_SIZE = {(dtype.kind, dtype.itemsize): name for name, dtype in DTYPES.items() if dtype.kind in "biuf"}
_LENGTH = struct.Struct("<I")
SMALL_TENSOR = 64


def datatype_of(values: np.ndarray) -> str:
    """The V2 datatype of an answer: FP64 for doubles, INT64 for labels, BYTES for strings..."""
    kind = values.dtype.kind
    if kind in "USO":
        return "BYTES"
    return _BY_KIND_SIZE.get((kind, values.dtype.itemsize), "FP64")


def element_count(shape: Sequence[int], field: str) -> int:
    for i, size in enumerate(shape):
        if type(size) is not int or size < 0:
            raise ScoringError("must be a list of non-negative integers", f"{field}[{i}]")
    return math.prod(shape)


def dtype_of(datatype: str, field: str) -> np.dtype:
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise ScoringError(f"unknown datatype {datatype!r}; use one of {', '.join(DTYPES)}", field)
    return dtype


def from_json(datatype: str, shape: Sequence[int], data: Any, field: str) -> np.ndarray:
    """JSON tensor data (flat or nested, row-major) to an array of `shape`.

    Numeric datatypes take JSON numbers only: strings (even numeric ones) and booleans are refused,
    as on every other protocol of the service; BOOL takes booleans, BYTES strings (or null: the
    missing value of an optional typed column, which the core refuses anywhere else)."""
    dtype_of(datatype, f"{field}.datatype")
    count = element_count(shape, f"{field}.shape")
    if not isinstance(data, list):
        raise ScoringError("must be a list of the tensor's elements", f"{field}.data")
    if datatype == "BYTES":
        flat = _flatten(data)
        # null too: the missing value of an optional typed column (the core refuses it anywhere else).
        bad = next((i for i, v in enumerate(flat) if not (v is None or isinstance(v, str))), None)
        if bad is not None:
            raise ScoringError("must be a string (datatype BYTES)", f"{field}.data[{bad}]")
        values = np.empty(len(flat), dtype=object)
        values[:] = flat
    else:
        try:
            values = np.array(data)
        except ValueError:  # ragged nesting
            raise ScoringError("nested lists must all have the same length (row-major)", f"{field}.data") from None
        kind = values.dtype.kind
        wanted = "b" if datatype == "BOOL" else "iuf"
        if kind not in wanted:
            _refuse_element(datatype, data, field)
        # numpy reads booleans among numbers as 0 and 1: only when those occur are the elements looked at.
        if kind in "iuf":
            _refuse_booleans(values, data, datatype, field)
        if datatype in NUMERIC:
            values = _cast(values, DTYPES[datatype], datatype, f"{field}.data")
    if values.size != count:
        raise ScoringError(f"holds {values.size} elements; shape {list(shape)} needs {count}", f"{field}.data")
    return values.reshape(shape)


def from_raw(datatype: str, shape: Sequence[int], raw: bytes | memoryview, field: str) -> np.ndarray:
    """Raw little-endian bytes (Triton's binary extension, gRPC's raw contents) to an array of `shape`."""
    dtype = dtype_of(datatype, f"{field}.datatype")
    count = element_count(shape, f"{field}.shape")
    if datatype == "BYTES":
        values = _unpack_bytes(raw, field)
        if values.size != count:
            raise ScoringError(f"holds {values.size} elements; shape {list(shape)} needs {count}", field)
        return values.reshape(shape)
    if len(raw) != count * dtype.itemsize:
        raise ScoringError(
            f"holds {len(raw)} bytes; shape {list(shape)} of {datatype} needs {count * dtype.itemsize}", field
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def to_raw(values: np.ndarray) -> bytes:
    """An answer as raw bytes: little-endian row-major elements; BYTES as 4-byte lengths and UTF-8."""
    if values.dtype.kind in "USO":
        parts = []
        for value in values.ravel().tolist():
            encoded = value if isinstance(value, bytes) else str(value).encode()
            parts += (_LENGTH.pack(len(encoded)), encoded)
        return b"".join(parts)
    datatype = datatype_of(values)
    return np.ascontiguousarray(values, dtype=DTYPES[datatype]).tobytes()


def json_data(values: np.ndarray) -> Any:
    """An answer's elements for a JSON body: flat, row-major, as the spec's examples are."""
    flat = values.ravel()
    if flat.dtype.kind == "S":
        return [value.decode(errors="replace") for value in flat.tolist()]
    return flat


def _unpack_bytes(raw: bytes | memoryview, field: str) -> np.ndarray:
    view = memoryview(raw)
    items: list[str] = []
    at = 0
    while at < len(view):
        if at + 4 > len(view):
            raise ScoringError("BYTES data is cut short (each element is a 4-byte length, then the bytes)", field)
        (length,) = _LENGTH.unpack_from(view, at)
        at += 4
        if at + length > len(view):
            raise ScoringError("BYTES data is cut short (an element is longer than what follows)", field)
        try:
            items.append(bytes(view[at : at + length]).decode())
        except UnicodeDecodeError:
            raise ScoringError(f"element {len(items)} is not UTF-8 text", field) from None
        at += length
    values = np.empty(len(items), dtype=object)
    values[:] = items
    return values


def _cast(values: np.ndarray, dtype: np.dtype, datatype: str, field: str) -> np.ndarray:
    if values.dtype == dtype:
        return values
    if dtype.kind in "iu" and values.dtype.kind == "f":
        raise ScoringError(f"must be whole numbers (datatype {datatype})", field)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if values.size and (values.min() < info.min or values.max() > info.max):
            raise ScoringError(f"holds a value out of the range of {datatype}", field)
    return values.astype(dtype)


def _refuse_booleans(values: np.ndarray, data: list[Any], datatype: str, field: str) -> None:
    """numpy reads booleans among numbers as 0 and 1: refuse them, as every protocol here does."""
    # A few elements are looked at one by one (cheaper than numpy's calls); many, only where 0 or 1 occurs.
    if values.size > SMALL_TENSOR and not ((values == 0) | (values == 1)).any():
        return
    flat = data if values.ndim == 1 else _flatten(data)
    for i, value in enumerate(flat):
        if value.__class__ is bool:
            raise ScoringError(f"must be a number (datatype {datatype}), not a boolean", f"{field}.data[{i}]")


def _flatten(data: list[Any]) -> list[Any]:
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def _refuse_element(datatype: str, data: list[Any], field: str) -> None:
    """Name the first element that does not fit `datatype`, or say the nesting is wrong."""
    flat = _flatten(data)
    for i, value in enumerate(flat):
        if datatype == "BOOL":
            if not isinstance(value, bool):
                raise ScoringError("must be true or false (datatype BOOL)", f"{field}.data[{i}]")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            found = _json_type(value)
            raise ScoringError(f"must be a number (datatype {datatype}), not {found}", f"{field}.data[{i}]")
    raise ScoringError("must be a list of elements, flat or nested row-major", f"{field}.data")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list (nested deeper than the others)"
    return "an object"
