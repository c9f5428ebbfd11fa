"""The Spark engine: the same scoring inside a Spark job, so data that outgrows one machine runs on
the user's cluster (standalone, YARN, Kubernetes, Databricks) with the same checks and messages.

Each input file is read by Spark, its Arrow batches go through the same `BatchScorer` on the
executors (`mapInArrow`: no pandas, so integers with nulls stay integers), and the prepared model is
shipped once, as a broadcast of its files (the compiled arrays where there are some, else the
artifact), loaded once per executor Python process, under the job's trust policy. The scored and
refused rows are written to temporary folders renamed into place once the file is done, and the
driver records the file in the manifest, as the local engine does: DIR/NAME/ and
DIR/_rejected/NAME/ hold Spark's part files. Row numbers come from Parquet's row index, so this
engine reads Parquet; CSV goes through the local engine. Executors need this package installed
(a local master uses this interpreter).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from diabetes_batch.errors import BatchError
from diabetes_batch.inputs import BATCH_ROWS, NO_ROW_LIMIT
from diabetes_batch.local import FileJob
from diabetes_batch.model import ReadyModel, load_core
from diabetes_batch.output import REJECTED_DIR, REJECTED_FIELDS, STAGING_PREFIX
from diabetes_batch.scorer import BatchScorer

ROW = "__row"
REFUSED = "__refused"


def _files_of(path: str) -> dict[str, bytes]:
    root = Path(path)
    if root.is_file():
        return {root.name: root.read_bytes()}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def shipped(ready: ReadyModel) -> dict[str, Any]:
    """What the executors get: the prepared model's files, and how to load them."""
    resolved = ready.resolved
    model = _files_of(resolved.path) if not resolved.compiled else {}
    return {
        "ready": ready.to_dict(),
        "model_is_file": Path(resolved.path).is_file(),
        "model": model,
        "compiled": _files_of(resolved.compiled) if resolved.compiled else {},
    }


_scorers: dict[tuple[str, str], BatchScorer] = {}


def _executor_scorer(ship: dict[str, Any], method: str) -> BatchScorer:
    """The scorer of this executor process, built once from the shipped files."""
    digest = hashlib.sha256(repr(sorted((k, hashlib.sha256(v).hexdigest()) for part in ("model", "compiled")
                                        for k, v in ship[part].items())).encode()).hexdigest()  # fmt: skip
    key = (digest, method)
    if key not in _scorers:
        folder = Path(tempfile.mkdtemp(prefix="diabetes-batch-model-"))
        for part in ("model", "compiled"):
            for name, content in ship[part].items():
                target = folder / part / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
        ready = ReadyModel.from_dict(ship["ready"])
        names = list(ship["model"])
        model_path = folder / "model" / (names[0] if ship["model_is_file"] and names else "")
        resolved = replace(
            ready.resolved,
            path=str(model_path),
            compiled=str(folder / "compiled") if ship["compiled"] else None,
        )
        _scorers[key] = BatchScorer(load_core(replace(ready, resolved=resolved), max_rows=NO_ROW_LIMIT), method)
    return _scorers[key]


def _score_batches(
    batches: Iterator[Any], ship: Any, method: str, keep: list[str], input_file: str, schema: Any
) -> Iterator[Any]:
    """mapInArrow's function: each batch scored, its refused rows beside, in one schema."""
    import pyarrow as pa

    scorer = _executor_scorer(ship.value, method)
    outputs = scorer.output_names()
    for batch in batches:
        if batch.num_rows == 0:
            continue
        scored = scorer.score(batch)
        rows = pa.array(scored.rows, pa.int64())
        count = len(scored.rows)
        arrays: dict[str, Any] = {name: batch.column(name).take(rows) for name in keep}
        arrays.update(zip(outputs, scorer.output_arrays(scored.predictions), strict=True))
        arrays.update(input_file=pa.nulls(count), row_number=pa.nulls(count), column=pa.nulls(count))
        arrays.update(message=pa.nulls(count), **{REFUSED: pa.array([False] * count)})
        yield _batch(arrays, schema)
        if scored.rejected_rows:
            refused = pa.array(scored.rejected_rows, pa.int64())
            count = len(scored.rejected_rows)
            arrays = {name: batch.column(name).take(refused) for name in keep}
            arrays.update({name: pa.nulls(count) for name in outputs})
            arrays.update(
                input_file=pa.array([input_file] * count),
                row_number=batch.column(ROW).take(refused),
                column=pa.array(scored.rejected_columns, pa.string()),
                message=pa.array(scored.rejected_messages, pa.string()),
                **{REFUSED: pa.array([True] * count)},
            )
            yield _batch(arrays, schema)


def _batch(arrays: dict[str, Any], schema: Any) -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_arrays([arrays[f.name].cast(f.type) for f in schema], schema=schema)


def session(master: str | None) -> Any:
    """The job's Spark session: `master`, else the one spark-submit set, else local[*]."""
    if master is None or master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the executors run this interpreter
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.appName("diabetes batch")
    if master:
        builder = builder.master(master)
    elif "spark.master" not in os.environ.get("PYSPARK_SUBMIT_ARGS", ""):
        builder = builder.master("local[*]")
    spark = (
        builder.config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # the job's own bar and summary say how far it is
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def run_spark(
    jobs: list[FileJob],
    ready: ReadyModel,
    scorer: BatchScorer,
    out_dir: Path,
    master: str | None,
    on_done: Callable[[FileJob, dict[str, Any]], None],
) -> None:
    csv = [job.file.path for job in jobs if job.file.format != "parquet"]
    if csv:
        raise BatchError(f"{csv[0]}: the Spark engine reads Parquet (it numbers rows by Parquet's row index); "
                         "score CSV files with --engine local")  # fmt: skip
    if not jobs:
        return
    import pyarrow as pa
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema

    spark = session(master)
    ship = spark.sparkContext.broadcast(shipped(ready))
    try:
        for job in jobs:
            features = [f.name for f in scorer.features]
            columns = list(dict.fromkeys([*job.keep, *features]))
            frame = spark.read.parquet(job.file.path).select(*columns, F.col("_metadata.row_index").alias(ROW))
            kept = [field for field in frame.schema.fields if field.name in job.keep]
            predictions = [pa.field(n, t) for n, t in zip(scorer.output_names(), scorer.output_types(), strict=True)]
            spark_schema = from_arrow_schema(pa.schema([*predictions, *REJECTED_FIELDS, pa.field(REFUSED, pa.bool_())]))
            for field in reversed(kept):
                spark_schema.fields.insert(0, field)
            spark_schema = type(spark_schema)(spark_schema.fields)
            arrow_schema = to_arrow_schema(spark_schema)
            method, keep, path = scorer.method, list(job.keep), job.file.path

            def score(batches: Iterator[Any], ship=ship, method=method, keep=keep, path=path, schema=arrow_schema):
                return _score_batches(batches, ship, method, keep, path, schema)

            mapped = frame.mapInArrow(score, spark_schema).persist(StorageLevel.MEMORY_AND_DISK)
            try:
                counts = {row[REFUSED]: row["count"] for row in mapped.groupBy(REFUSED).count().collect()}
                outputs = [*job.keep, *scorer.output_names()]
                scored_dir = _write(mapped.filter(~F.col(REFUSED)).select(*outputs), out_dir, job.name)
                rejected = counts.get(True, 0)
                rejected_dir = out_dir / REJECTED_DIR / job.name
                if rejected:
                    fields = [*job.keep, *(f.name for f in REJECTED_FIELDS)]
                    _write(mapped.filter(F.col(REFUSED)).select(*fields), out_dir / REJECTED_DIR, job.name)
                else:
                    shutil.rmtree(rejected_dir, ignore_errors=True)
            except Exception as exc:
                if isinstance(exc, BatchError):
                    raise
                raise BatchError(f"{job.file.path}: the Spark job failed: {_last_line(exc)}") from None
            finally:
                mapped.unpersist()
            on_done(
                job,
                {
                    "output": scored_dir.name,
                    "rejected_output": f"{REJECTED_DIR}/{job.name}" if rejected else None,
                    "scored": counts.get(False, 0),
                    "rejected": rejected,
                    "rows": counts.get(False, 0) + rejected,
                },
            )
    finally:
        ship.destroy()


def _write(frame: Any, folder: Path, name: str) -> Path:
    """`frame` as Parquet part files in folder/NAME/, written under a temporary name first."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f"{STAGING_PREFIX}{name}"
    final = folder / name
    frame.write.mode("overwrite").parquet(str(staging))
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    return final


def _last_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]
