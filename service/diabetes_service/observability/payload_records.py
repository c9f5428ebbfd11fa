"""Payload records as an Arrow table: what the payload sink (payloads.py) writes, built in its thread.

One record per scored row and one per refused call, in the schema `diabetes monitor` reads:
`request_id`, `timestamp` (UTC, µs), `protocol`, `route`, `transport`, `model_name`,
`model_version`, `status` (int32), `error` (null when scored), `method` and `row` (null when
refused), one column per input feature under its signature name and type, then the outputs:
`prediction` (float64 for a regressor, the class label for a classifier) and, for a model with
predict_proba, one float64 `proba_<class>` column per class. Every file of a model version holds
every one of these columns (nulls where a record has none), so that a dataset's schema, which
pyarrow takes from one file, is the same whichever file it reads first.

Nothing here imports the model or the scoring core (observability sits below both): a model is
seen through what it says of itself (`features`, `feature_names`, `methods`, `classes`) and a
typed request's input as the columns of its table.

The rows come from the arrays the request was already decoded to and the model's answer: a
request's matrix is concatenated with the others' of its batch here, off the event loop, never
turned into per-row Python objects on the request path.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa

PREDICT, PREDICT_PROBA = "predict", "predict_proba"
# MLflow's column types to Arrow's; anything else is inferred by pyarrow from the values.
ARROW_TYPES = {
    "double": pa.float64(),
    "float": pa.float32(),
    "long": pa.int64(),
    "integer": pa.int32(),
    "boolean": pa.bool_(),
    "string": pa.string(),
    "binary": pa.binary(),
    "datetime": pa.timestamp("us"),
}
BASE = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
        ("protocol", pa.string()),
        ("route", pa.string()),
        ("transport", pa.string()),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
        ("status", pa.int32()),
        ("error", pa.string()),
        ("method", pa.string()),
        ("row", pa.int32()),
    ]
)


@dataclass(slots=True)
class Entry:
    """One logged call: what the envelope's close step had at hand, nothing computed per row yet."""

    timestamp: float  # seconds since the epoch
    request_id: str
    protocol: str
    route: str
    transport: str
    status: int
    error: str | bytes | None  # a refusal's message (gRPC) or error body (HTTP: the message is read here)
    name: str
    version: str
    core: Any  # the scoring core that scored it; for a refusal, the one serving then (if any)
    inputs: Any = None  # the checked matrix or Table the model was given
    outputs: dict[str, np.ndarray] | None = None  # by method, in the order the call asked for them

    @property
    def rows(self) -> int:
        return len(self.inputs) if self.outputs else 1


def schema_of(core: Any) -> pa.Schema:
    """Every column of a record of `core`'s model: the base, the features, the outputs."""
    fields = list(BASE)
    if core is None:
        return pa.schema(fields)
    fields += [pa.field(f.name, ARROW_TYPES.get(f.type, pa.string())) for f in core.features]
    if PREDICT in core.methods:
        label = pa.float64() if core.classes is None else pa.array(core.classes).type
        fields.append(pa.field("prediction", label))
    if PREDICT_PROBA in core.methods and core.classes is not None:
        fields += [pa.field(f"proba_{label}", pa.float64()) for label in core.classes]
    return pa.schema(fields)


def build(entries: Sequence[Entry], redact: dict[str, str]) -> pa.Table:
    """The records of `entries` (one model version): scored calls grouped by the outputs they asked
    for, so that each group's arrays are concatenated once; refusals in a group of their own."""
    core = next((e.core for e in entries if e.core is not None), None)
    schema = schema_of(core)
    groups: dict[tuple[str, ...], list[Entry]] = {}
    for entry in entries:
        key = tuple(entry.outputs) if entry.outputs else ()
        groups.setdefault(key, []).append(entry)
    tables = [_group(group, schema, core) for group in groups.values()]
    table = tables[0] if len(tables) == 1 else pa.concat_tables([_plain(t) for t in tables])
    return _redacted(table, redact)


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings: groups whose columns differ in kind concatenate."""
    columns = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def write(table: pa.Table, path: Any) -> None:
    """One Parquet file. Dictionary pages for the strings only: a float column of real traffic is
    almost all distinct values, and trying a dictionary for it first cost ~8 µs per row here
    (measured, 40,000 random rows x 11 float columns: 322 ms with, 32 ms without). Statistics only
    where a reader filters (time, status). The Arrow schema is not stored: the dictionary columns
    read back as the plain strings the Parquet types say."""
    import pyarrow.parquet as pq

    strings = [f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_dictionary(f.type)]
    stats = [name for name in ("timestamp", "status") if name in table.column_names]
    pq.write_table(table, path, use_dictionary=strings, write_statistics=stats, store_schema=False)


def _group(entries: list[Entry], schema: pa.Schema, core: Any) -> pa.Table:
    counts = np.fromiter((e.rows for e in entries), dtype=np.int64, count=len(entries))
    total = int(counts.sum())
    scored = bool(entries[0].outputs)
    each = np.repeat(np.arange(len(entries)), counts)  # the entry of each record

    indices = None if total == len(entries) else pa.array(each.astype(np.int32))

    def per_entry(values: list[Any], kind: pa.DataType) -> pa.Array:
        # A request's value on each of its rows: numbers repeated by numpy, strings as a dictionary
        # array (no copy per row; Parquet writes it as the dictionary page it would have built).
        if indices is None:
            return pa.array(values, kind)
        if pa.types.is_string(kind):
            return pa.DictionaryArray.from_arrays(indices, pa.array(values, kind))
        return pa.array(np.repeat(np.asarray(values), counts)).cast(kind)

    columns: dict[str, pa.Array] = {
        "request_id": per_entry([e.request_id for e in entries], pa.string()),
        "timestamp": per_entry([int(e.timestamp * 1_000_000) for e in entries], pa.int64()).cast(
            pa.timestamp("us", tz="UTC")
        ),
        "protocol": per_entry([e.protocol for e in entries], pa.string()),
        "route": per_entry([e.route for e in entries], pa.string()),
        "transport": per_entry([e.transport for e in entries], pa.string()),
        "model_name": per_entry([e.name for e in entries], pa.string()),
        "model_version": per_entry([e.version for e in entries], pa.string()),
        "status": per_entry([e.status for e in entries], pa.int32()),
    }
    if not scored:  # a scored record's error stays null (a column of nulls, filled below)
        columns["error"] = per_entry([error_message(e.error) for e in entries], pa.string())
    if scored:
        methods = list(entries[0].outputs)  # type: ignore[arg-type]
        columns["method"] = pa.array([methods[0]] * total, pa.string())
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        columns["row"] = pa.array((np.arange(total) - starts).astype(np.int32))
        assert core is not None
        columns.update(_features(entries, core, schema))
        for method in methods:
            columns.update(_outputs(method, [e.outputs[method] for e in entries], core, schema))  # type: ignore[index]
    arrays = [columns[field.name] if field.name in columns else pa.nulls(total, field.type) for field in schema]
    arrays = [_as(a, f.type) for a, f in zip(arrays, schema, strict=True)]
    return pa.Table.from_arrays(arrays, names=schema.names)


def _features(entries: list[Entry], core: Any, schema: pa.Schema) -> dict[str, pa.Array]:
    first = entries[0].inputs
    names = core.feature_names
    if not isinstance(first, np.ndarray):  # a typed request's table (model/columns.py): one list per column
        merged = [[v for e in entries for v in e.inputs.columns[i]] for i in range(len(names))]
        return {name: _typed(values, schema.field(name).type) for name, values in zip(names, merged, strict=True)}
    matrix = np.concatenate([e.inputs for e in entries]) if len(entries) > 1 else np.asarray(first)
    columns = np.ascontiguousarray(matrix.T)  # one copy; each column then becomes an Arrow array without one
    return {name: pa.array(columns[i]) for i, name in enumerate(names)}


def _typed(values: list[Any], kind: pa.DataType) -> pa.Array:
    try:
        return pa.array(values, kind)
    except (pa.ArrowException, TypeError, ValueError):  # e.g. mixed naive and aware datetimes
        return pa.array([None if v is None else str(v) for v in values], pa.string())


def _outputs(method: str, results: list[np.ndarray], core: Any, schema: pa.Schema) -> dict[str, pa.Array]:
    values = np.concatenate(results) if len(results) > 1 else np.asarray(results[0])
    if method == PREDICT and "prediction" in schema.names:
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]
        if values.ndim != 1:
            return {}  # a multi-output model's predictions have no column in this schema
        return {"prediction": pa.array(values.tolist() if values.dtype == object else values)}
    if method == PREDICT_PROBA and core.classes is not None and values.ndim == 2:
        columns = np.ascontiguousarray(values.T)
        return {f"proba_{label}": pa.array(columns[i]) for i, label in enumerate(core.classes)}
    return {}


def _as(array: pa.Array, kind: pa.DataType) -> pa.Array:
    if array.type == kind or (pa.types.is_dictionary(array.type) and array.type.value_type == kind):
        return array
    try:
        return array.cast(kind)
    except (pa.ArrowException, TypeError, ValueError):
        return pa.nulls(len(array), kind)


def error_message(error: str | bytes | None) -> str | None:
    """A refusal's message: the text a gRPC status carried, or the `message`/`error` of an HTTP error body."""
    if error is None or isinstance(error, str):
        return error
    try:
        import orjson

        body = orjson.loads(error)
    except ValueError:
        return error.decode("utf-8", "replace")
    if isinstance(body, dict):
        message = body.get("message", body.get("error"))
        if isinstance(message, str):
            return message
    return error.decode("utf-8", "replace")


def _redacted(table: pa.Table, redact: dict[str, str]) -> pa.Table:
    for name, how in redact.items():
        if name not in table.column_names:
            continue
        index = table.column_names.index(name)
        if how == "drop":
            table = table.remove_column(index)
        else:
            digests = pa.array(
                [None if v is None else _sha256(v) for v in table.column(index).to_pylist()], pa.string()
            )
            table = table.set_column(index, pa.field(name, pa.string()), digests)
    return table


def _sha256(value: Any) -> str:
    """The hex sha256 of a value's text: numbers as JSON writes them (`0.038`, `57`), booleans
    `true`/`false`, strings as they are (UTF-8), date-times in ISO 8601, bytes as they are."""
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, bool):
        data = b"true" if value else b"false"
    elif isinstance(value, float):
        data = (repr(value) if math.isfinite(value) else "null").encode()
    elif isinstance(value, datetime):
        data = value.isoformat().encode()
    else:
        data = str(value).encode()
    return hashlib.sha256(data).hexdigest()


def warm_up() -> None:
    """Build and write (in memory) a scored and a refused record once, before the worker serves.

    pyarrow imports its Parquet writer and compute kernels at their first use: ~0.3-0.4 s of the
    writer thread's CPU measured here (2 workers, 100-row calls), holding the interpreter lock the
    event loop needs, so that the first flush stalled the requests of that moment.
    """
    from types import SimpleNamespace

    core = SimpleNamespace(
        features=(SimpleNamespace(name="x", type="double"),),
        feature_names=("x",),
        methods=(PREDICT,),
        classes=None,
    )
    scored = Entry(0.0, "warm", "p", "/r", "http", 200, None, "m", "v", core, np.zeros((2, 1)), {PREDICT: np.zeros(2)})
    refused = Entry(0.0, "warm", "p", "/r", "http", 400, b'{"message": "m"}', "m", "v", core)
    write(build([scored, scored, refused], {"x": "hash"}), pa.BufferOutputStream())
