"""Read the payload log: the records of one model version in a time window, as one Arrow table.

The log (written by the service's payload sink, issue 24 item 1) is Parquet under
DIR/model=<name>/version=<version>/date=YYYY-MM-DD/hour=HH/<unique>.parquet, in UTC. pyarrow.dataset
prunes whole folders on the partition keys (model, version, and the dates a window spans) before it
opens a file, then filters rows on `timestamp`: a million records read in about a second, only the
columns the report needs.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from diabetes_monitor.errors import MonitorError

PARTITIONS = (("model", "string"), ("version", "string"), ("date", "string"), ("hour", "string"))
RECORD_COLUMNS = ("timestamp", "status", "error")


def parse_time(text: str, flag: str) -> dt.datetime:
    """An ISO 8601 date or time (UTC when it names no zone); MonitorError naming `flag` otherwise."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MonitorError(f"{flag} {text!r} is not an ISO 8601 time (e.g. 2026-12-07 or 2026-12-07T06:00Z)") from None
    return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def _dataset(folder: Path) -> Any:
    import pyarrow as pa
    import pyarrow.dataset as ds

    if not folder.is_dir():
        raise MonitorError(f"--payloads {folder}: no such folder")
    schema = pa.schema([(name, getattr(pa, kind)()) for name, kind in PARTITIONS])
    try:
        return ds.dataset(folder, format="parquet", partitioning=ds.partitioning(schema, flavor="hive"))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise MonitorError(f"cannot read the payload log {folder}: {exc}") from None


def versions(folder: Path) -> set[tuple[str, str]]:
    """The (model, version) pairs that have records in the log."""
    found = set()
    for model_dir in folder.glob("model=*"):
        for version_dir in model_dir.glob("version=*"):
            # The sink quotes names into folder names (`quote(name, safe="")`), as hive partitioning reads them.
            found.add(
                (unquote(model_dir.name.removeprefix("model=")), unquote(version_dir.name.removeprefix("version=")))
            )
    return found


def read(
    folder: Path,
    model: str,
    version: str,
    columns: list[str],
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Any:
    """The records of `model` `version` with since <= timestamp < until: the record columns and those of
    `columns` the log holds (a redacted column may be missing). MonitorError when there are none."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    dataset = _dataset(folder)
    if (model, version) not in versions(folder):
        held = ", ".join(f"{m} version {v}" for m, v in sorted(versions(folder))) or "nothing"
        raise MonitorError(f"no payload records of model {model!r} version {version} in {folder} (it holds {held})")
    where = (ds.field("model") == model) & (ds.field("version") == version)
    if since is not None:
        where &= ds.field("date") >= since.date().isoformat()
        where &= ds.field("timestamp") >= pa.scalar(since, pa.timestamp("us", tz="UTC"))
    if until is not None:
        where &= ds.field("date") <= until.date().isoformat()
        where &= ds.field("timestamp") < pa.scalar(until, pa.timestamp("us", tz="UTC"))
    present = set(dataset.schema.names)
    missing = [name for name in RECORD_COLUMNS if name not in present]
    if missing:
        raise MonitorError(f"{folder} is not a payload log: its records have no {', '.join(missing)} column")
    wanted = [*RECORD_COLUMNS, *(name for name in columns if name in present)]
    try:
        table = dataset.to_table(columns=wanted, filter=where)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise MonitorError(f"cannot read the payload log {folder}: {str(exc).splitlines()[0]}") from None
    if table.num_rows == 0:
        window = f" between {since.isoformat() if since else 'the start'} and {until.isoformat() if until else 'now'}"
        raise MonitorError(f"no payload records of model {model!r} version {version} in {folder}{window}")
    return table
