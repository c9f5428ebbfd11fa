"""`--engine spark` on a real Spark (local[2]): the same rows scored, the same rows refused with the
same messages as the local engine, Spark's part files under DIR/NAME/, and a rerun skips what is done."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.batch.conftest import read_dir, run_batch

pytestmark = pytest.mark.slow


def test_spark_engine_scores_as_the_local_engine(example_model_pkl, example_table, tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    columns = {name: example_table.column(name).to_pylist() for name in example_table.column_names}
    columns["bp"][4] = None
    columns["s6"][50] = math.inf
    table = pa.table(columns, schema=example_table.schema)
    pq.write_table(table.slice(0, 30), data / "a.parquet")
    pq.write_table(table.slice(30), data / "b.parquet")
    base = ["--model-uri", str(example_model_pkl), str(data), "--keep", "id", "--json"]
    local = run_batch(*base, "-o", str(tmp_path / "local"))
    assert local.returncode == 0, local.stderr
    out = tmp_path / "spark"
    spark = run_batch(*base, "-o", str(out), "--engine", "spark", "--spark-master", "local[2]", timeout=600)
    assert spark.returncode == 0, spark.stderr[-2000:]
    summary = json.loads(spark.stdout)
    assert (summary["scored"], summary["rejected"]) == (table.num_rows - 2, 2)

    def scored(folder):
        return pa.concat_tables([read_dir(folder / name) for name in ("a", "b")]).sort_by("id")

    expected = read_dir(tmp_path / "local").sort_by("id")
    assert scored(out).equals(expected)
    refused = pa.concat_tables([pq.read_table(out / "_rejected" / name) for name in ("a", "b")]).sort_by("id")
    assert refused.equals(pq.read_table(tmp_path / "local" / "_rejected").sort_by("id"))
    assert refused.column("row_number").to_pylist() == [4, 20]  # row 50 is the 21st of b.parquet

    again = run_batch(*base, "-o", str(out), "--engine", "spark", "--spark-master", "local[2]", timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["skipped_files"] == 2
