"""`python -m loadtests.bench.batch`: `diabetes batch` against its peers, ratios from one run (issue 23).

The worked example registered by `diabetes train` (and its typed pipeline, `--task pipeline`) scores
N rows (default 1M) held in 4 Parquet files, every tool writing the same predictions with an id:
- `diabetes batch`, local engine (`--workers 2`), from its start to its exit, with the peak
  resident memory of its process tree, then again with each file twice as long (memory flat?);
- `mlflow.pyfunc.spark_udf` on `local[2]` (result_type double, env_manager local), reading and
  writing the same Parquet, from the script's start (JVM included) to its end;
- `diabetes batch --engine spark --spark-master local[2]`, the same way;
- the floor: pyarrow alone reading the same input columns and writing the same output columns.
Then checks that our predictions equal the model's own `predict` and spark_udf's to 1e-9 and the
service's answers (`diabetes serve`, `/score`) for a sample of rows. Targets: local ≥ 5x spark_udf,
Spark engine ≥ 1.2x spark_udf, peak memory ≤ 1 GiB and flat when the input doubles.
The machine is shared: only the ratios of one run mean anything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from loadtests.bench.store import BIN, Store, clean_env, train

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
ROW_GROUP = 65_536

SPARK_UDF = """
import sys, time
import mlflow.pyfunc
from pyspark.sql import SparkSession
tracking, uri, data, out, columns = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].split(",")
mlflow.set_tracking_uri(tracking)
spark = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
predict = mlflow.pyfunc.spark_udf(spark, uri, result_type="double", env_manager="local")
frame = spark.read.parquet(data)
frame.select("id", predict(*[frame[c] for c in columns]).alias("prediction")).write.mode("overwrite").parquet(out)
spark.stop()
"""


def write_inputs(folder: Path, rows: int, files: int, typed: bool) -> Path:
    """`rows` rows of the example (its 442 rows drawn again, slightly moved) in `files` Parquet files."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_diabetes

    folder.mkdir(parents=True, exist_ok=True)
    scaled = load_diabetes(as_frame=True).data
    raw = load_diabetes(as_frame=True, scaled=False).data
    rng = np.random.default_rng(0)
    per_file = rows // files
    for f in range(files):
        picks = rng.integers(0, len(scaled), per_file)
        columns: dict[str, Any] = {"id": pa.array(np.arange(f * per_file, (f + 1) * per_file))}
        for name in FEATURES:
            values = scaled[name].to_numpy()[picks] + rng.normal(0, 1e-4, per_file)
            if typed and name == "age":
                columns[name] = pa.array(raw["age"].to_numpy()[picks].round().astype(np.int64))
            elif typed and name == "sex":
                columns[name] = pa.array(np.where(raw["sex"].to_numpy()[picks] == 1.0, "female", "male"))
            else:
                columns[name] = pa.array(values)
        pq.write_table(pa.table(columns), folder / f"part-{f}.parquet", row_group_size=ROW_GROUP)
    return folder


class TreeMemory:
    """Peak resident memory of a process and its descendants, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(self.pid)
                total = 0
                for proc in [root, *root.children(recursive=True)]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        total += proc.memory_info().rss
                self.peak = max(self.peak, total)
            self._stop.wait(0.05)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def timed(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, str]:
    """Wall seconds and peak tree memory (MiB) of `cmd`; its standard output."""
    started = time.perf_counter()
    with open(log, "ab") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=err)
        memory = TreeMemory(proc.pid)
        out, _ = proc.communicate(timeout=3600)
    seconds = time.perf_counter() - started
    peak = memory.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): see {log}")
    return seconds, peak, out.decode()


def floor(data: Path, out: Path) -> float:
    """pyarrow alone: the input's columns read, the output's columns (id, one double) written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    for path in sorted(data.glob("*.parquet")):
        source = pq.ParquetFile(path)
        with pq.ParquetWriter(out / path.name, pa.schema([("id", pa.int64()), ("prediction", pa.float64())])) as w:
            for batch in source.iter_batches(ROW_GROUP, columns=["id", *FEATURES], use_threads=False):
                w.write_batch(pa.record_batch([batch.column(0), batch.column("bmi")], names=["id", "prediction"]))
    return time.perf_counter() - started


def read_predictions(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    import pyarrow.parquet as pq

    table = pq.read_table(folder, columns=["id", "prediction"]).sort_by("id")
    return np.asarray(table.column("id")), np.asarray(table.column("prediction"))


def service_answers(store: Store, uri: str, rows: list[dict], work: Path) -> np.ndarray:
    """`diabetes serve`'s `/score` answers for `rows` (objects keyed by feature name)."""
    import requests

    from loadtests.bench.processes import ServerProcess, free_port

    port = free_port()
    cmd = [
        str(BIN / "diabetes"),
        "serve",
        "--model-uri",
        uri,
        "--port",
        str(port),
        "--workers",
        "1",
        "--grpc-port",
        "0",
    ]
    env = clean_env(DIABETES_HOME=str(store.home), DIABETES_TRACKING_URI=store.tracking_uri)
    server = ServerProcess(
        "serve", cmd, port=port, ready_path="/health/ready", env=env, log=work / "serve.log", cwd=work
    )
    server.start(timeout=300)
    try:
        answers: list[float] = []
        for start in range(0, len(rows), 1000):
            body = {"data": rows[start : start + 1000], "method": "predict"}
            answer = requests.post(f"http://127.0.0.1:{port}/score", json=body, timeout=60)
            answer.raise_for_status()
            answers += answer.json()
        return np.asarray(answers)
    finally:
        server.stop()


def case(name: str, store: Store, uri: str, data: Path, work: Path, spark: bool, results: dict[str, Any]) -> None:
    env = clean_env(DIABETES_HOME=str(store.home), DIABETES_TRACKING_URI=store.tracking_uri)
    log = work / f"{name}.log"
    ours = [str(BIN / "diabetes"), "batch", "--model-uri", uri, str(data), "--keep", "id", "--json"]
    row: dict[str, Any] = {}
    # Once untimed: the prepared-model cache is filled as a service's first start fills it.
    timed([*ours, "-o", str(work / f"{name}-warm"), "--workers", "1"], env, log)
    seconds, peak, out = timed([*ours, "-o", str(work / f"{name}-local"), "--workers", "2"], env, log)
    row.update(local_seconds=seconds, local_peak_mib=peak, local_rows=json.loads(out)["rows"])
    if spark:
        script = [sys.executable, "-c", SPARK_UDF, store.tracking_uri, uri, str(data), str(work / f"{name}-udf")]
        row["spark_udf_seconds"], row["spark_udf_peak_mib"], _ = timed([*script, ",".join(FEATURES)], env, log)
        spark_cmd = [*ours, "-o", str(work / f"{name}-spark"), "--engine", "spark", "--spark-master", "local[2]"]
        row["spark_engine_seconds"], row["spark_engine_peak_mib"], _ = timed(spark_cmd, env, log)
        row["local_vs_spark_udf"] = row["spark_udf_seconds"] / row["local_seconds"]
        row["spark_engine_vs_spark_udf"] = row["spark_udf_seconds"] / row["spark_engine_seconds"]
        ids, ours_p = read_predictions(work / f"{name}-local")
        udf_ids, udf_p = read_predictions(work / f"{name}-udf")
        assert np.array_equal(ids, udf_ids)
        row["max_diff_vs_spark_udf"] = float(np.max(np.abs(ours_p - udf_p)))
    row["floor_seconds"] = floor(data, work / f"{name}-floor")
    row["local_rows_per_second"] = row["local_rows"] / row["local_seconds"]
    row["floor_rows_per_second"] = row["local_rows"] / row["floor_seconds"]
    results[name] = row


def own_predict_diff(
    store: Store, uri: str, data: Path, out: Path, sample: int
) -> tuple[float, list[dict], np.ndarray]:
    """Max |ours - model.predict| over every row, and a sample of rows with our predictions."""
    import mlflow.sklearn
    import pyarrow.parquet as pq

    mlflow.set_tracking_uri(store.tracking_uri)
    model = mlflow.sklearn.load_model(uri)
    frame = pq.read_table(data).to_pandas().sort_values("id")
    ids, ours = read_predictions(out)
    assert np.array_equal(ids, frame["id"].to_numpy())
    own = model.predict(frame[FEATURES])
    head = frame.head(sample)
    rows = [
        {k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in head[FEATURES].to_dict("records")
    ]
    return float(np.max(np.abs(ours - own))), rows, ours[:sample]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.bench.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--no-spark", action="store_true", help="skip spark_udf and the Spark engine")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args(argv)
    from loadtests.bench.mixed import train_pipeline

    results: dict[str, Any] = {"rows": args.rows, "files": args.files}
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        work = Path(tmp)
        (work / "home").mkdir()
        store = train(work / "home")
        pipeline = train_pipeline(store)
        numeric = write_inputs(work / "numeric", args.rows, args.files, typed=False)
        case("example", store, store.model_uri, numeric, work, not args.no_spark, results)
        doubled = write_inputs(work / "doubled", 2 * args.rows, args.files, typed=False)
        env = clean_env(DIABETES_HOME=str(store.home), DIABETES_TRACKING_URI=store.tracking_uri)
        cmd = [str(BIN / "diabetes"), "batch", "--model-uri", store.model_uri, str(doubled), "-o", str(work / "d")]
        seconds, peak, _ = timed([*cmd, "--keep", "id", "--json", "--workers", "2"], env, work / "doubled.log")
        results["example"].update(doubled_seconds=seconds, doubled_peak_mib=peak)
        typed = write_inputs(work / "typed", args.rows, args.files, typed=True)
        case("pipeline", pipeline, pipeline.model_uri, typed, work, not args.no_spark, results)
        diff, rows, ours = own_predict_diff(store, store.model_uri, numeric, work / "example-local", 2000)
        results["example"]["max_diff_vs_own_predict"] = diff
        answers = service_answers(store, store.model_uri, rows, work)
        results["example"]["max_diff_vs_service_2000_rows"] = float(np.max(np.abs(ours - answers)))
    print(report(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def report(results: dict[str, Any]) -> str:
    lines = [f"diabetes batch, {results['rows']:,} rows in {results['files']} Parquet files (one run, shared machine)"]
    for name, row in results.items():
        if not isinstance(row, dict):
            continue
        lines.append(f"[{name}]")
        for key, value in row.items():
            lines.append(f"  {key:32} {value:,.4g}" if isinstance(value, float) else f"  {key:32} {value}")
        if "local_vs_spark_udf" in row:
            lines.append(f"  target local >= 5x spark_udf: {'met' if row['local_vs_spark_udf'] >= 5 else 'MISSED'}")
            ok = row["spark_engine_vs_spark_udf"] >= 1.2
            lines.append(f"  target Spark engine >= 1.2x spark_udf: {'met' if ok else 'MISSED'}")
        if "doubled_peak_mib" in row:
            flat = row["doubled_peak_mib"] <= 1.15 * row["local_peak_mib"]
            lines.append(f"  target peak <= 1 GiB: {'met' if row['local_peak_mib'] <= 1024 else 'MISSED'}; "
                         f"flat when doubled: {'yes' if flat else 'NO'}")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
