"""`python -m loadtests.bench.monitor`: the drift report on 1M logged rows x 10 features (issue 24).

Target: <= 30 s on 2 cores, from `diabetes monitor`'s start to its exit (the interpreter's start,
the payload log's read, the statistics, the HTML with its plots). Measured 17.3 s on the shared
2-core machine (2026-12-08); before, 21.5 s for 100k rows, most of it scipy.stats' imports (6 s, now
scipy.special's) and matplotlib's tight_layout drawing every plot twice. The log is written here as the
payload sink writes it (the record schema of issue 24, item 1: hive folders by model, version, date
and hour, one Parquet file per hour), one feature shifted by 2 standard deviations so that the
report has a drifting column to draw. `write_log` is also the tests' writer (tests/monitor).
"""

from __future__ import annotations

import argparse
import datetime as dt
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
START = dt.datetime(2026, 12, 7, tzinfo=dt.UTC)


def write_log(
    folder: Path,
    model: str,
    version: str,
    features: Mapping[str, Any],
    outputs: Mapping[str, Any],
    times: np.ndarray,
    *,
    refusals: int = 0,
    feature_types: Mapping[str, Any] | None = None,
) -> int:
    """Write scored records (one per row of `features`/`outputs`, logged at `times`, datetime64[us] in
    UTC) and `refusals` refused records as the payload sink does; the number of files written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = len(times)
    types = {name: pa.float64() for name in features} | dict(feature_types or {})
    columns: dict[str, Any] = {
        "request_id": pa.array([f"r{i // 4}" for i in range(rows)], pa.string()),
        "timestamp": pa.array(times, pa.timestamp("us", tz="UTC")),
        "protocol": pa.array(["azureml"] * rows, pa.string()),
        "route": pa.array(["/score"] * rows, pa.string()),
        "transport": pa.array(["http"] * rows, pa.string()),
        "model_name": pa.array([model] * rows, pa.string()),
        "model_version": pa.array([version] * rows, pa.string()),
        "status": pa.array(np.full(rows, 200, dtype="int32")),
        "error": pa.nulls(rows, pa.string()),
        "method": pa.array(["predict"] * rows, pa.string()),
        "row": pa.array((np.arange(rows) % 4).astype("int32")),
        **{name: pa.array(values, types[name]) for name, values in features.items()},
        **{name: pa.array(values, pa.float64()) for name, values in outputs.items()},
    }
    table = pa.table(columns)
    if refusals:
        refused = {name: pa.nulls(refusals, column.type) for name, column in columns.items()}
        refused["request_id"] = pa.array([f"x{i}" for i in range(refusals)], pa.string())
        refused["timestamp"] = pa.array(times[:refusals], pa.timestamp("us", tz="UTC"))
        refused["status"] = pa.array(np.full(refusals, 400, dtype="int32"))
        refused["error"] = pa.array(["data[0][0]: expected a number"] * refusals, pa.string())
        refused["model_name"] = pa.array([model] * refusals, pa.string())
        refused["model_version"] = pa.array([version] * refusals, pa.string())
        table = pa.concat_tables([table, pa.table(refused)])
    hours = table["timestamp"].to_numpy().astype("datetime64[h]")
    files = 0
    for hour in np.unique(hours):
        part = table.filter(pa.array(hours == hour))
        stamp = hour.astype(dt.datetime)
        where = folder / f"model={model}" / f"version={version}" / f"date={stamp:%Y-%m-%d}" / f"hour={stamp:%H}"
        where.mkdir(parents=True, exist_ok=True)
        pq.write_table(part, where / f"{uuid.uuid4().hex}.parquet")
        files += 1
    return files


def hourly_times(rows: int, hours: int, start: dt.datetime = START) -> np.ndarray:
    """`rows` timestamps spread evenly over `hours` hours from `start`, as datetime64[us]."""
    begin = np.datetime64(start.replace(tzinfo=None), "us")
    return begin + (np.arange(rows) * (hours * 3_600_000_000 // rows)).astype("timedelta64[us]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.monitor", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--hours", type=int, default=24)
    args = parser.parse_args(argv)
    from diabetes_monitor.profile import PROFILE_FILE, build_profile, save

    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as work:
        root = Path(work)
        model = root / "bench_model"
        train = {name: rng.normal(0.0, 1.0, 5_000) for name in FEATURES}
        save(build_profile(train, {"prediction": sum(train.values())}), model / PROFILE_FILE)
        current = {name: rng.normal(2.0 if name == "bmi" else 0.0, 1.0, args.rows) for name in FEATURES}
        started = time.perf_counter()
        files = write_log(
            root / "payloads", "bench_model", "none", current, {"prediction": sum(current.values())},
            hourly_times(args.rows, args.hours), refusals=1_000,
        )  # fmt: skip
        written = time.perf_counter() - started
        command = [
            sys.executable, "-m", "diabetes_cli.main", "monitor", "--payloads", str(root / "payloads"),
            "--model-uri", str(model), "--out", str(root / "report.html"), "--json", str(root / "report.json"),
        ]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return 1
        size = (root / "report.html").stat().st_size
    print(f"log: {args.rows} rows x {len(FEATURES)} features in {files} files, written in {written:.1f} s")
    print(f"diabetes monitor: {seconds:.1f} s (target <= 30 s), report {size / 1024:.0f} KiB; {done.stdout.strip()}")
    return 0 if seconds <= 30 else 2


if __name__ == "__main__":
    raise SystemExit(main())
