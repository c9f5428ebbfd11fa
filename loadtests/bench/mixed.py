"""The mixed-type part of the bench (`--also-mixed`, issue 16): the example's pipeline with typed
columns (`diabetes train --task pipeline`: `sex` as "female"/"male", `age` in whole years, eight
doubles), served by `diabetes serve` and by `mlflow models serve` from the same registered version,
each given the same `/invocations` body (`dataframe_split` of typed values). Ours is also measured
on `/score` (rows as objects) and V2 (one input per column), on the same process, for the record.

The numeric example's figures are this run's other cells; that the typed path leaves them where
they were is the `--also-baseline` A/B against the previous checkout's service code.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from typing import Any

from loadtests.bench import servers
from loadtests.bench.results import Results
from loadtests.bench.store import BIN, Store, clean_env
from loadtests.bench.targets import Check, _ratio

COLUMNS = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
V2_TYPES = {"age": "INT64", "sex": "BYTES"}  # the other columns: FP64
TARGET = 10  # × mlflow models serve, 1-row req/s


def train_pipeline(store: Store) -> Store:
    """`diabetes train --task pipeline` into the bench's store: `diabetes_pipeline`, registered."""
    done = subprocess.run(
        [str(BIN / "diabetes"), "train", "--task", "pipeline", "--json"],
        env=clean_env(DIABETES_HOME=str(store.home)),
        cwd=store.home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"diabetes train --task pipeline failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    return replace(store, model_name=result["model_name"], model_version=int(result["model_version"]))


def typed_rows() -> list[list[Any]]:
    """The worked example's 89 test rows as the pipeline takes them: age an integer, sex a string."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    from diabetes_trainer.tasks import pipeline_inputs

    x, _ = load_diabetes(return_X_y=True, as_frame=True)
    _, x_test = train_test_split(x, test_size=0.2, random_state=0)
    typed = pipeline_inputs(x_test)[COLUMNS]
    return [[int(r[0]), str(r[1]), *(float(v) for v in r[2:])] for r in typed.itertuples(index=False)]


def invocations_body(rows: list[list[Any]]) -> bytes:
    """The one body both servers get on `/invocations`."""
    return json.dumps({"dataframe_split": {"columns": COLUMNS, "data": rows}}).encode()


def score_body(rows: list[list[Any]]) -> bytes:
    return json.dumps({"data": [dict(zip(COLUMNS, row, strict=True)) for row in rows], "method": "predict"}).encode()


def v2_body(rows: list[list[Any]]) -> bytes:
    inputs = [
        {"name": name, "datatype": V2_TYPES.get(name, "FP64"), "shape": [len(rows)], "data": [row[i] for row in rows]}
        for i, name in enumerate(COLUMNS)
    ]
    return json.dumps({"inputs": inputs}).encode()


def measure(bench: Any, store: Store, cache: Any, progress) -> None:
    """Ours, then `mlflow models serve` (unless --skip-mlflow), alone on the machine in turn, 1-row."""
    progress("registering the mixed-type pipeline (diabetes train --task pipeline)")
    pipeline = train_pipeline(store)
    rows = typed_rows()
    base = servers.ours(pipeline, pipeline.model_uri, bench.args.workers, cache)
    ours = replace(
        base,
        key="mixed-invocations",
        label="mixed pipeline, diabetes serve /invocations",
        score_path="/invocations",
        body=invocations_body,
        also=(
            servers.Route("mixed-score", "mixed pipeline, diabetes serve /score", "/score", score_body),
            servers.Route(
                "mixed-v2", "mixed pipeline, diabetes serve V2 REST", f"/v2/models/{pipeline.model_name}/infer", v2_body
            ),
        ),
    )
    bench.measure(ours, rows, (1,))
    if not bench.args.skip_mlflow:
        theirs = replace(
            servers.mlflow_serve(pipeline, bench.args.workers),
            key="mixed-mlflow",
            label="mixed pipeline, mlflow models serve",
            body=invocations_body,
        )
        bench.measure(theirs, rows, (1,))


def checks(results: Results, high: int) -> list[Check]:
    """Issue 16's target, where this run measured it, and the typed path's cost for the record."""
    if results.cell("mixed-invocations", 1, high) is None:
        return []

    def req_s(server: str) -> float | None:
        cell = results.cell(server, 1, high)
        return cell.wrk.req_per_s if cell else None

    vs_mlflow = _ratio(req_s("mixed-invocations"), req_s("mixed-mlflow"))
    vs_numeric = _ratio(req_s("mixed-score"), req_s("ours"))
    return [
        Check(
            f"mixed pipeline 1-row req/s ≥ {TARGET}× mlflow models serve, same model and body ({high} conns)",
            "n/a" if vs_mlflow is None else f"{vs_mlflow:.1f}×",
            None if vs_mlflow is None else vs_mlflow >= TARGET,
        ),
        Check(
            f"mixed pipeline /score 1-row req/s vs the numeric example's ({high} conns; for the record)",
            "n/a" if vs_numeric is None else f"{vs_numeric:.0%}",
            None,
        ),
    ]
