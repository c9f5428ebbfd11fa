"""A batch job's promises about its output folder: a mistake in the input stops it with one line
naming the file and the column and nothing written; a job killed at any moment and run again has
every row once; --overwrite starts over; --max-rejected sets the exit status."""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess
import time

import joblib
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.batch.conftest import read_dir, run_batch
from tests.conftest import FEATURES
from tests.support.processes import DIABETES, REPO


def _written(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*.parquet")) if folder.exists() else []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing file", "no such file or folder"),
        ("missing column", "column 's4' is missing"),
        ("wrong type", "column 'bmi' holds string, which the model's double feature cannot take"),
        ("unreadable", "cannot be read"),
    ],
)
def test_bad_input_stops_with_one_line_and_nothing_written(example_model_pkl, example_table, tmp_path, case, expected):
    good = tmp_path / "good.parquet"
    pq.write_table(example_table, good)
    bad = tmp_path / "bad.parquet"
    if case == "missing column":
        pq.write_table(example_table.drop(["s4"]), bad)
    elif case == "wrong type":
        column = example_table.column_names.index("bmi")
        pq.write_table(example_table.set_column(column, "bmi", pa.compute.cast(example_table["bmi"], pa.string())), bad)
    elif case == "unreadable":
        bad.write_bytes(b"PAR1 not really a parquet file")
    out = tmp_path / "out"
    done = run_batch("--model-uri", str(example_model_pkl), str(good), str(bad), "-o", str(out))
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"diabetes batch: {bad}"), lines[0]
    assert expected in lines[0]
    assert _written(out) == []  # not even the good file: every file is checked before any is scored


def test_max_rejected_sets_the_exit_status(example_model_pkl, example_table, tmp_path):
    columns = {name: example_table.column(name).to_pylist() for name in example_table.column_names}
    columns["s1"][0] = columns["s1"][9] = None
    pq.write_table(pa.table(columns, schema=example_table.schema), tmp_path / "rows.parquet")
    for limit, status in (("2", 0), ("1", 4)):
        out = tmp_path / f"out{limit}"
        done = run_batch("--model-uri", str(example_model_pkl), str(tmp_path / "rows.parquet"), "-o", str(out),
                         "--max-rejected", limit)  # fmt: skip
        assert done.returncode == status, done.stderr
        assert pq.read_table(out / "_rejected").num_rows == 2  # the job completes either way
        assert read_dir(out).num_rows == example_table.num_rows - 2
    assert "2 rows rejected, more than --max-rejected 1" in done.stderr


def test_a_killed_job_rerun_has_every_row_once(example_data, tmp_path):
    from tests.batch.slow_model import PausingRidge

    model = PausingRidge(alpha=0.03).fit(pd.DataFrame(example_data.x_train, columns=FEATURES), example_data.y_train)
    joblib.dump(model, tmp_path / "model.pkl")
    data = tmp_path / "in"
    data.mkdir()
    files = 8
    for f in range(files):
        ids = list(range(f * 50, f * 50 + 50))
        table = {"id": pa.array(ids, pa.int64())}
        table.update({n: pa.array([example_data.x_test[i % 89][j] for i in ids]) for j, n in enumerate(FEATURES)})
        pq.write_table(pa.table(table), data / f"part-{f}.parquet")
    out = tmp_path / "out"
    args = [DIABETES, "batch", "--model-uri", str(tmp_path / "model.pkl"), str(data), "-o", str(out), "--keep", "id"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([*args, "--workers", "2"], env=env, start_new_session=True, stderr=subprocess.PIPE)
    manifest = out / "_manifest.json"
    deadline = time.monotonic() + 120
    done_files = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done_files = len(json.loads(manifest.read_text())["files"])
        except (OSError, ValueError):
            done_files = 0
        if done_files >= 2:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert 2 <= done_files < files, "the job should have been killed midway"
    # What a kill leaves: whole outputs, maybe a staging file; never a half-written output in place.
    time.sleep(1.0)  # the killed workers notice their parent is gone and stop
    finished = json.loads(manifest.read_text())["files"]
    for entry in finished.values():
        assert pq.read_table(out / entry["output"]).num_rows == 50

    done = run_batch("--model-uri", str(tmp_path / "model.pkl"), str(data), "-o", str(out), "--keep", "id", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["skipped_files"] >= len(finished)
    ids = read_dir(out).column("id").to_pylist()
    assert sorted(ids) == list(range(files * 50))  # every row once
    assert not list(out.glob(".partial-*"))


def test_another_job_is_refused_and_overwrite_starts_over(example_model_pkl, example_table, tmp_path):
    pq.write_table(example_table, tmp_path / "rows.parquet")
    out = tmp_path / "out"
    base = ["--model-uri", str(example_model_pkl), str(tmp_path / "rows.parquet"), "-o", str(out)]
    assert run_batch(*base, "--keep", "id").returncode == 0
    again = run_batch(*base, "--json")
    assert again.returncode == 1
    assert "holds the output of another job" in again.stderr
    assert read_dir(out).column_names == ["id", "prediction"]  # left as it was
    fresh = run_batch(*base, "--overwrite", "--json")
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["skipped_files"] == 0
    assert read_dir(out).column_names == ["prediction"]


def test_progress_bar_on_a_terminal_only(example_model_pkl, example_table, tmp_path):
    pq.write_table(example_table, tmp_path / "rows.parquet")
    plain = run_batch("--model-uri", str(example_model_pkl), str(tmp_path / "rows.parquet"), "-o", str(tmp_path / "a"))
    assert plain.returncode == 0
    assert plain.stderr.count("\r") == 0
    assert len(plain.stderr.strip().splitlines()) == 1
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [DIABETES, "batch", "--model-uri", str(example_model_pkl), str(tmp_path / "rows.parquet"), "-o",
         str(tmp_path / "b")],
        stderr=follower, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=120) == 0
    os.close(leader)
    assert b"rows" in seen
    assert b"\r" in seen


def test_a_long_csv_is_scored_in_bounded_batches(example_model_pkl, example_table, tmp_path):
    """More rows than one batch holds (65,536): CSV blocks are gathered and cut back to batches."""
    import pyarrow.csv as pcsv

    repeats = 160  # 89 rows x 160 x 5 = 71,200 rows
    table = pa.concat_tables([example_table] * repeats)
    table = pa.concat_tables([table] * 5)
    table = table.set_column(0, "id", pa.array(range(table.num_rows), pa.int64()))
    pcsv.write_csv(table, tmp_path / "long.csv")
    out = tmp_path / "out"
    done = run_batch("--model-uri", str(example_model_pkl), str(tmp_path / "long.csv"), "-o", str(out), "--keep", "id",
                     "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["scored"] == table.num_rows > 65_536
    assert read_dir(out).column("id").to_pylist() == list(range(table.num_rows))
