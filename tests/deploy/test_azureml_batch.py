"""`diabetes deploy azureml --v2 --batch`: the batch endpoint and deployment up to the socket, and the
scoring entry run for real on a real MLflow model folder.

The MLClient is azure-ai-ml's own, its HTTP session ending in `azure_wire.Wire` (no workspace is
reachable here). The code folder's upload to Blob storage cannot run here either: the wire answers
that the workspace already holds a folder of that content hash, which azure-ai-ml then reuses, so
the hash the library computes for our folder is what the test checks. The entry itself runs in a
child process from a copy of that folder, as Azure ML's batch driver runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from diabetes_deploy.azureml_batch import ENTRY, PACKAGES, BatchOptions, code_folder, delete_batch, deploy_batch
from diabetes_deploy.errors import DeployError
from diabetes_deploy.spec import load_spec, parse_spec
from tests.conftest import FEATURES, ExampleData
from tests.deploy.azure_wire import LOCATION, Wire, ml_client
from tests.support.processes import DIABETES, REPO

SPEC = REPO / "service" / "deployment.yaml"
ENDPOINT = "/batchEndpoints/diabetes-service"
DEPLOYMENT = ENDPOINT + "/deployments/blue"


def _content_hash(folder: Path) -> str:
    from azure.ai.ml._utils._asset_utils import get_content_hash

    return str(get_content_hash(folder))


@pytest.fixture
def wire(tmp_path: Path) -> Wire:
    wire = Wire()
    wire.code_hashes.add(_content_hash(code_folder(tmp_path / "expected-code")))
    return wire


def test_batch_endpoint_and_deployment_of_the_registered_model(wire: Wire, tmp_path: Path) -> None:
    options = BatchOptions(compute="gpu-less", instance_count=2, mini_batch_size=8, keep=("id",), version=3)
    uri = deploy_batch(load_spec(SPEC), ml_client(wire), options, tmp_path / "work")
    assert uri == f"https://diabetes-service.{LOCATION}.inference.ml.azure.com/jobs"
    puts = [c.path.split("/workspaces/ws")[1] for c in wire.calls if c.method == "PUT"]
    assert puts == [ENDPOINT, "/environments/diabetes-service-batch/versions/1", DEPLOYMENT, ENDPOINT]
    first, last = (c.body for c in wire.named("PUT", ENDPOINT))
    assert "defaults" not in first["properties"]  # the deployment becomes the default only once it is up
    assert last["properties"]["defaults"] == {"deploymentName": "blue"}
    (deployment,) = wire.named("PUT", DEPLOYMENT)
    props = deployment.body["properties"]
    assert props["model"]["assetId"].endswith("/workspaces/ws/models/diabetes_model/versions/3")
    assert props["compute"].endswith("/workspaces/ws/computes/gpu-less")
    assert props["resources"]["instanceCount"] == 2
    assert (props["miniBatchSize"], props["maxConcurrencyPerInstance"]) == (8, 1)
    assert props["outputAction"] == "SummaryOnly"
    assert "outputFileName" not in props
    assert props["retrySettings"] == {"maxRetries": 3, "timeout": "PT5M"}
    assert props["errorThreshold"] == -1
    # The entry and the code it imports: the folder whose content hash the workspace holds.
    code = props["codeConfiguration"]
    assert code["scoringScript"] == "score.py"
    assert "/codes/uploaded-" in code["codeId"]
    hashes = [c.query for c in wire.calls if "/codes/" in c.path and "hash=" in c.query]
    assert len(hashes) == 1
    assert next(iter(wire.code_hashes)) in hashes[0]
    env = props["environmentVariables"]
    assert env["DIABETES_BATCH_KEEP"] == "id"
    assert env["DIABETES_ALLOW_PICKLE"] == "0"  # the spec's trust policy
    assert "DIABETES_BATCH_METHOD" not in env
    (environment,) = wire.named("PUT", "/environments/diabetes-service-batch/versions/1")
    conda = environment.body["properties"]["condaFile"]
    assert "pyarrow" in conda
    assert "scikit-learn" in conda
    assert "python=3.11" in conda
    assert "- azureml-core\n" in conda  # Azure's batch driver
    assert all(c.headers.get("Authorization") == "Bearer recorded-token" for c in wire.calls)


def test_append_row_names_its_file_and_method_reaches_the_entry(wire: Wire, tmp_path: Path) -> None:
    spec = parse_spec({"name": "abc", "model": {"name": "m", "version": 2, "allow_pickle": True}})
    options = BatchOptions(output_action="append_row", method="predict_proba", max_retries=0, retry_timeout_seconds=60)
    deploy_batch(spec, ml_client(wire), options, tmp_path / "work")
    (deployment,) = wire.named("PUT", "/batchEndpoints/abc/deployments/blue")
    props = deployment.body["properties"]
    assert props["outputAction"] == "AppendRow"
    assert props["outputFileName"] == "summary.txt"
    assert props["retrySettings"] == {"maxRetries": 0, "timeout": "PT1M"}
    assert props["environmentVariables"]["DIABETES_BATCH_METHOD"] == "predict_proba"
    assert props["environmentVariables"]["DIABETES_ALLOW_PICKLE"] == "1"


def test_delete_removes_the_batch_endpoint(wire: Wire, tmp_path: Path) -> None:
    client = ml_client(wire)
    deploy_batch(load_spec(SPEC), client, BatchOptions(version=1), tmp_path / "work")
    assert any(p.endswith(DEPLOYMENT) for p in wire.resources)
    delete_batch(load_spec(SPEC), client)
    (deleted,) = wire.named("DELETE", ENDPOINT)
    assert deleted.body is None
    assert not any("/batchEndpoints/" in p for p in wire.resources)


def test_nothing_is_sent_when_the_spec_or_options_cannot_be_deployed(wire: Wire, tmp_path: Path) -> None:
    with pytest.raises(DeployError, match="versions, not MLflow aliases"):
        deploy_batch(load_spec(SPEC), ml_client(wire), BatchOptions(), tmp_path / "a")
    with pytest.raises(DeployError, match="--mini-batch-size: 0 must be at least 1"):
        deploy_batch(load_spec(SPEC), ml_client(wire), BatchOptions(version=1, mini_batch_size=0), tmp_path / "b")
    with pytest.raises(DeployError, match="--error-threshold: -2"):
        deploy_batch(load_spec(SPEC), ml_client(wire), BatchOptions(version=1, error_threshold=-2), tmp_path / "c")
    assert wire.calls == []


def test_a_refused_deployment_is_one_line_and_keeps_the_default(wire: Wire, tmp_path: Path) -> None:
    wire.refuse["/deployments/blue"] = (400, "BadArgument", "Compute cpu-cluster not found\nsecond line")
    with pytest.raises(DeployError) as caught:
        deploy_batch(load_spec(SPEC), ml_client(wire), BatchOptions(version=1), tmp_path / "work")
    message = str(caught.value)
    assert message.startswith("Azure ML batch endpoint diabetes-service: HttpResponseError: ")
    assert "Compute cpu-cluster not found" in message
    assert "\n" not in message
    assert ["defaults" in c.body["properties"] for c in wire.named("PUT", ENDPOINT)] == [False]


def test_the_code_folder_holds_the_entry_and_what_it_imports(tmp_path: Path) -> None:
    folder = code_folder(tmp_path / "code")
    assert (folder / "score.py").read_bytes() == ENTRY.read_bytes()
    for name in PACKAGES:
        assert (folder / name / "__init__.py").is_file()
    assert (folder / "diabetes_batch" / "local.py").is_file()
    assert not list(folder.rglob("__pycache__"))
    # Two builds upload as one code version: the content hash does not depend on where it is built.
    assert _content_hash(folder) == _content_hash(code_folder(tmp_path / "again"))


def test_the_entry_scores_parquet_files_with_diabetes_batch(example_data: ExampleData, tmp_path: Path) -> None:
    """init() and run(mini_batch) in a child process, from the uploaded folder, on an MLflow model folder."""
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import Ridge

    train = pd.DataFrame(example_data.x_train, columns=FEATURES)
    model = Ridge(alpha=0.03).fit(train, example_data.y_train)
    # Azure ML mounts the registered model's folder under AZUREML_MODEL_DIR/<name>/<version>/.
    model_dir = tmp_path / "azureml-models" / "diabetes_model" / "3"
    model_dir.mkdir(parents=True)
    mlflow.sklearn.save_model(model, model_dir / "model", input_example=train.head(2))
    rows = example_data.x_test[:30]
    columns = {"id": pa.array(range(len(rows)), pa.int64())}
    columns.update({name: pa.array([r[j] for r in rows], pa.float64()) for j, name in enumerate(FEATURES)})
    table = pa.table(columns)
    bmi = table.column("bmi").to_pylist()
    bmi[4] = float("nan")  # a row the service would refuse
    table = table.set_column(FEATURES.index("bmi") + 1, "bmi", pa.array(bmi, pa.float64()))
    data = tmp_path / "in"
    data.mkdir()
    pq.write_table(table.slice(0, 10), data / "a.parquet")
    pq.write_table(table.slice(10), data / "b.parquet")
    out = tmp_path / "out"
    out.mkdir()
    code = code_folder(tmp_path / "code")
    script = (
        "import json, sys, score, diabetes_batch; score.init(); "
        "print(json.dumps({'lines': score.run(sys.argv[1:]), 'from': diabetes_batch.__file__}))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        AZUREML_MODEL_DIR=str(model_dir.parent.parent),
        AZUREML_BI_OUTPUT_PATH=str(out),
        DIABETES_BATCH_KEEP="id",
        DIABETES_ALLOW_PICKLE="1",  # MLflow's sklearn flavour saves a pickle
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(data / "a.parquet"), str(data / "b.parquet")],
        cwd=code,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(answer["from"]).is_relative_to(code)  # the uploaded copy, not the installed package
    assert answer["lines"] == ["a.parquet: 9 rows scored, 1 rejected", "b.parquet: 20 rows scored, 0 rejected"]
    scored = pa.concat_tables([pq.read_table(p) for p in sorted(out.glob("*.parquet"))]).sort_by("id")
    assert scored.column_names == ["id", "prediction"]
    ids = scored.column("id").to_pylist()
    assert ids == [i for i in range(len(rows)) if i != 4]
    own = model.predict(pd.DataFrame([rows[i] for i in ids], columns=FEATURES))
    assert np.max(np.abs(np.asarray(scored.column("prediction")) - own)) <= 1e-9
    (rejected,) = pq.read_table(out / "_rejected").to_pylist()
    assert (rejected["id"], rejected["column"], rejected["row_number"]) == (4, "bmi", 4)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    return subprocess.run(
        [DIABETES, "deploy", "azureml", "--spec", str(SPEC), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
    )


def test_cli_checks_the_spec_flags_and_config_before_any_call(tmp_path: Path) -> None:
    no_v2 = run_cli("--batch", cwd=tmp_path)
    assert no_v2.returncode == 1
    assert "--batch needs --v2" in no_v2.stderr
    alias = run_cli("--v2", "--batch", cwd=tmp_path)
    assert alias.returncode == 1
    assert "Azure ML models have versions, not MLflow aliases" in alias.stderr
    bad = run_cli("--v2", "--batch", "--model-version", "1", "--instance-count", "0", cwd=tmp_path)
    assert bad.returncode == 1
    assert bad.stderr.strip() == "diabetes deploy: --instance-count: 0 must be at least 1"
    no_config = run_cli("--v2", "--batch", "--model-version", "1", cwd=tmp_path)
    assert no_config.returncode == 1
    assert no_config.stderr.strip() == (
        "diabetes deploy: config.json: no such workspace config (download config.json from the portal)"
    )
