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
turned into per-row Python objects on the request path. The columns are read straight from the
tuples the sink queued (`zip(*calls)`), with no object per call: at 1-row calls the writer's Python
work per call was its cost (an Entry per call and a list per column: 5.2 µs per call, now 2.0 µs,
payloads.py), and the features are copied once, straight into column order (0.56 -> 0.31 µs per
row of 100-row calls).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import datetime
from operator import itemgetter
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


# A queued call (payloads.py `offer`): (timestamp in seconds, request id, route, (protocol, transport),
# status, error, the model that answered or None, kept, records), `kept` being None for a refusal,
# else the request's predictions, last first: (input, method, answer, core, the previous link or None).
KEPT = 7
# Read with map() at C speed, not a Python step per call (at 1-row calls that step was the cost).
_KEPT = itemgetter(KEPT)
_INPUT, _METHOD, _ANSWER, _PREVIOUS = itemgetter(0), itemgetter(1), itemgetter(2), itemgetter(4)
_FIRST, _SECOND = _INPUT, _METHOD


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


def build(calls: Sequence[tuple], name: str, version: str, core: Any, redact: dict[str, str]) -> pa.Table:
    """The records of `calls` (queued tuples of one model version, as `offer` left them): scored
    calls grouped by the outputs they asked for, so that each group's arrays are concatenated once;
    refusals in a group of their own. No object per call: columns come from the tuples directly."""
    schema = schema_of(core)
    kepts = list(map(_KEPT, calls))
    if None not in kepts:
        methods = set(map(_METHOD, kepts))
        if len(methods) == 1 and list(map(_PREVIOUS, kepts)).count(None) == len(kepts):
            # The usual batch: every call scored once, with one method; grouped at C speed, not per call.
            return _redacted(_group(list(calls), (methods.pop(),), name, version, schema, core), redact)
    groups: dict[tuple[str, ...], list[tuple]] = {}
    for call in calls:
        kept = call[KEPT]
        key = () if kept is None else (kept[1],) if kept[4] is None else _methods(kept)
        group = groups.get(key)
        if group is None:
            groups[key] = [call]
        else:
            group.append(call)
    tables = [_group(group, methods, name, version, schema, core) for methods, group in groups.items()]
    table = tables[0] if len(tables) == 1 else pa.concat_tables([_plain(t) for t in tables])
    return _redacted(table, redact)


def _methods(kept: tuple) -> tuple[str, ...]:
    """The methods of a request that predicted more than once (V2 outputs), in the order it asked."""
    methods: list[str] = []
    while kept is not None:
        methods.insert(0, kept[1])
        kept = kept[4]
    return tuple(dict.fromkeys(methods))


def _answers(kept: tuple) -> tuple[Any, dict[str, Any]]:
    """A request's input and its answer by method (the first prediction's input, as before)."""
    inputs, outputs = None, {}
    while kept is not None:
        inputs, method, result, _, kept = kept
        outputs.setdefault(method, result)
    return inputs, outputs


def _plain(table: pa.Table) -> pa.Table:
    """Dictionary columns as plain strings: groups whose columns differ in kind concatenate."""
    columns = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.Table.from_arrays(columns, names=table.column_names)


def write(table: pa.Table, path: Any) -> None:
    """One Parquet file. Dictionary pages for the strings only: a float column of real traffic is
    almost all distinct values, and trying a dictionary for it first cost ~8 µs per row here
    (measured, 40,000 random rows x 11 float columns: 322 ms with, 32 ms without). Nor for a plain
    (unique per record) request id, and neither it nor a float column is compressed: random hex
    and measured doubles do not shrink under Snappy, and trying cost half the write of a batch of
    1-row calls (2026-12-08, 20,000 records: 0.28 -> 0.14 µs per record, files 8% larger; 100-row
    calls unchanged at ~0.17 µs). Statistics only where a reader filters (time, status). The Arrow
    schema is not stored: the dictionary columns read back as the plain strings the Parquet types say."""
    import pyarrow.parquet as pq

    strings, compression = [], {}
    for field in table.schema:
        kind = field.type
        unique = field.name == "request_id" and pa.types.is_string(kind)
        if pa.types.is_dictionary(kind) or (pa.types.is_string(kind) and not unique):
            strings.append(field.name)
        compression[field.name] = "none" if unique or pa.types.is_floating(kind) else "snappy"
    stats = [name for name in ("timestamp", "status") if name in table.column_names]
    pq.write_table(
        table, path, use_dictionary=strings, compression=compression, write_statistics=stats, store_schema=False
    )


def _constant(value: Any, zeros: pa.Array) -> pa.Array:
    """One value on every record: a dictionary of one entry (no string copied per row; Parquet
    writes it as the dictionary page it would have built). `zeros`, the indices, are shared by
    every such column of a batch and not checked again (`safe=False`): a batch of 100-row calls
    spent ~9 ns a record building and checking one array of zeros per column (2026-12-08)."""
    return pa.DictionaryArray.from_arrays(zeros, pa.array([value], pa.string()), safe=False)


def _group(
    calls: list[tuple], methods: tuple[str, ...], name: str, version: str, schema: pa.Schema, core: Any
) -> pa.Table:
    stamps, request_ids, routes, wheres, statuses, errors, _, kepts, _ = zip(*calls, strict=True)
    n = len(calls)
    inputs: list[Any] = []
    outputs: dict[str, list[Any]] = {}
    if not methods:
        counts = np.ones(n, np.int64)
    elif len(methods) == 1 and list(map(_PREVIOUS, kepts)).count(None) == n:
        inputs = list(map(_INPUT, kepts))
        outputs = {methods[0]: list(map(_ANSWER, kepts))}
        counts = np.fromiter(map(len, inputs), np.int64, n)
    else:
        answers = [_answers(k) for k in kepts]
        inputs = [a[0] for a in answers]
        outputs = {m: [a[1][m] for a in answers] for m in methods}
        counts = np.fromiter(map(len, inputs), np.int64, n)
    total = int(counts.sum())
    each = None if total == n else pa.array(np.repeat(np.arange(n, dtype=np.int32), counts))  # the call of each record
    zeros = pa.array(np.zeros(total, np.int32))  # the indices of every one-value column

    def strings(values: Sequence[Any]) -> pa.Array:
        # A call's value on each of its rows; one value on all of them (a route, a protocol) costs one entry.
        if values.count(values[0]) == n:
            return _constant(values[0], zeros)
        if each is None:
            return pa.array(values, pa.string())
        return pa.DictionaryArray.from_arrays(each, pa.array(values, pa.string()), safe=False)  # each < n

    def numbers(values: Sequence[Any], dtype: type) -> np.ndarray:
        array = np.fromiter(values, dtype, n)
        return array if each is None else np.repeat(array, counts)

    micros = (np.fromiter(stamps, np.float64, n) * 1_000_000).astype(np.int64)
    columns: dict[str, pa.Array] = {
        "request_id": strings(request_ids),
        "timestamp": pa.array(micros if each is None else np.repeat(micros, counts)).cast(pa.timestamp("us", tz="UTC")),
        "protocol": strings(list(map(_FIRST, wheres))),
        "route": strings(routes),
        "transport": strings(list(map(_SECOND, wheres))),
        "model_name": _constant(name, zeros),
        "model_version": _constant(version, zeros),
        "status": pa.array(numbers(statuses, np.int32)),
    }
    if not methods:  # a scored record's error stays null (a column of nulls, filled below)
        columns["error"] = pa.array([error_message(e) for e in errors], pa.string())
    else:
        columns["method"] = _constant(methods[0], zeros)
        starts = np.repeat(np.cumsum(counts) - counts, counts)
        columns["row"] = pa.array((np.arange(total) - starts).astype(np.int32))
        assert core is not None
        columns.update(_features(inputs, total, core, schema))
        for method in methods:
            columns.update(_outputs(method, outputs[method], core, schema))
    arrays = [columns[field.name] if field.name in columns else pa.nulls(total, field.type) for field in schema]
    arrays = [_as(a, f.type) for a, f in zip(arrays, schema, strict=True)]
    return pa.Table.from_arrays(arrays, names=schema.names)


def _features(inputs: list[Any], total: int, core: Any, schema: pa.Schema) -> dict[str, pa.Array]:
    first = inputs[0]
    names = core.feature_names
    if not isinstance(first, np.ndarray):  # a typed request's table (model/columns.py): one list per column
        merged = [[v for table in inputs for v in table.columns[i]] for i in range(len(names))]
        return {name: _typed(values, schema.field(name).type) for name, values in zip(names, merged, strict=True)}
    # One copy, straight into column order: each column then becomes an Arrow array without another.
    columns = np.empty((total, first.shape[1]), dtype=first.dtype, order="F")
    try:
        np.concatenate(inputs, out=columns)
    except TypeError:  # matrices of different kinds: numpy's own promotion, then the transposed copy
        columns = np.asfortranarray(np.concatenate(inputs))
    return {name: pa.array(columns[:, i]) for i, name in enumerate(names)}


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
    kept = (np.zeros((2, 1)), PREDICT, np.zeros(2), core, None)
    scored = (0.0, "warm", "/r", ("p", "http"), 200, None, None, kept, 2)
    refused = (0.0, "warm", "/r", ("p", "http"), 400, b'{"message": "m"}', None, None, 1)
    write(build([scored, scored, refused], "m", "v", core, {"x": "hash"}), pa.BufferOutputStream())
