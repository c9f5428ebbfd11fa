"""The bench's mixed-type pieces without starting servers (`--also-mixed`): the rows are the example's
test rows as the pipeline takes them, both servers get the same `/invocations` body, and the target
is a ratio of cells measured in the same run."""

from __future__ import annotations

import json

from loadtests.bench import mixed
from loadtests.bench.results import Cell, Results
from loadtests.bench.wrk import WrkResult


def test_rows_are_typed_as_the_pipelines_signature():
    rows = mixed.typed_rows()
    assert len(rows) == 89
    for row in rows:
        assert type(row[0]) is int  # age in whole years
        assert 18 <= row[0] <= 80
        assert row[1] in ("female", "male")
        assert all(type(value) is float for value in row[2:])


def test_bodies_hold_the_same_rows():
    rows = mixed.typed_rows()[:2]
    split = json.loads(mixed.invocations_body(rows))["dataframe_split"]
    assert (split["columns"], split["data"]) == (mixed.COLUMNS, rows)
    score = json.loads(mixed.score_body(rows))["data"]
    assert [list(row.values()) for row in score] == rows
    inputs = {t["name"]: t for t in json.loads(mixed.v2_body(rows))["inputs"]}
    assert (inputs["sex"]["datatype"], inputs["sex"]["data"]) == ("BYTES", [rows[0][1], rows[1][1]])
    assert inputs["age"]["datatype"] == "INT64"
    assert inputs["s6"]["datatype"] == "FP64"


def _cell(server: str, req_per_s: float) -> Cell:
    return Cell(server, server, 1, 16, WrkResult(int(req_per_s * 5), 5.0, 0, 0, 1.0, 2.0), 100.0, 1.0, 100.0)


def test_the_target_is_a_ratio_of_the_same_run():
    assert mixed.checks(Results([_cell("ours", 9_000)]), 16) == []  # not measured: nothing claimed
    results = Results([_cell("ours", 9_000), _cell("mixed-invocations", 4_000), _cell("mixed-score", 4_500)])
    results.cells.append(_cell("mixed-mlflow", 250))
    target, record = mixed.checks(results, 16)
    assert (target.measured, target.passed) == ("16.0×", True)
    assert (record.measured, record.passed) == ("50%", None)
    results.cells[-1] = _cell("mixed-mlflow", 500)
    assert mixed.checks(results, 16)[0].passed is False  # 8×
