"""`diabetes deploy kubernetes --kserve`: an InferenceService and its ServingRuntime, checked against
KServe's own schema through the kserve SDK's generated models, in a throwaway virtualenv (its pins,
fastapi's and starlette's among them, are not this project's). Not applied to a cluster: none here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.deploy.test_kubernetes import K8S_VERSION, deploy_kubernetes, load_dir

CHECK = Path(__file__).with_name("kserve_schema_check.py")
KSERVE = "kserve>=0.15"


@pytest.fixture(scope="module")
def kserve_python(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The python of a virtualenv with the kserve SDK (DIABETES_KSERVE_VENV: one built before)."""
    reuse = os.environ.get("DIABETES_KSERVE_VENV")
    if reuse:
        return str(Path(reuse) / "bin" / "python")
    root = tmp_path_factory.mktemp("kserve") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    python = str(root / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", KSERVE],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    return python


def check(python: str, documents: list[dict]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, str(CHECK)], input=json.dumps(documents), capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("kserve-out")
    secrets = tmp_path_factory.mktemp("kserve-secrets") / "keys.yaml"
    proc = deploy_kubernetes(
        out, "--kserve", "--image", "registry.example.test/diabetes:1", "--secret-out", str(secrets), keys="k-one,k-two"
    )
    assert proc.returncode == 0, proc.stderr
    return {**load_dir(out), "secret-out": yaml.safe_load(secrets.read_text())}


def test_kserve_writes_an_inference_service_its_runtime_and_the_keys(written: dict[str, dict]) -> None:
    # The keys' Secret only where --secret-out put it, never among the manifests.
    assert set(written) == {"inferenceservice.yaml", "servingruntime.yaml", "kustomization.yaml", "secret-out"}
    isvc = written["inferenceservice.yaml"]
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    predictor = isvc["spec"]["predictor"]
    model = predictor["model"]
    assert model["protocolVersion"] == "v2"
    assert model["runtime"] == written["servingruntime.yaml"]["metadata"]["name"]
    # The spec: 1 core and 1 GB guaranteed, limits 2 and 2; autoscaling 1-3 at 70% CPU; grace 45 s.
    assert model["resources"] == {
        "requests": {"cpu": "1", "memory": "1024Mi"},
        "limits": {"cpu": "2", "memory": "2048Mi"},
    }
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 3)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 70)
    assert predictor["terminationGracePeriodSeconds"] == 45
    env = {e["name"]: e for e in model["env"]}
    assert env["DIABETES_API_KEYS"]["valueFrom"]["secretKeyRef"] == {"name": "diabetes-service-keys", "key": "api-keys"}
    assert written["secret-out"]["metadata"]["name"] == "diabetes-service-keys"
    assert env["DIABETES_GRPC_PORT"]["value"] == "8081"
    runtime = written["servingruntime.yaml"]["spec"]
    assert runtime["protocolVersions"] == ["v2", "grpc-v2"]
    assert runtime["containers"][0]["image"] == "registry.example.test/diabetes:1"
    assert "k-one" not in json.dumps([isvc, written["servingruntime.yaml"]])
    kubernetes_validate.validate(written["secret-out"], K8S_VERSION, strict=True)


def test_fixed_replicas_and_no_auth(tmp_path: Path) -> None:
    spec = tmp_path / "fixed.yaml"
    spec.write_text(
        "name: fixed-service\nmodel: {name: diabetes_model, version: 2}\nscale: {replicas: 4}\nauth: {enabled: false}\n"
    )
    proc = deploy_kubernetes(tmp_path / "out", "--kserve", spec=spec)
    assert proc.returncode == 0, proc.stderr
    files = load_dir(tmp_path / "out")
    assert "secret.yaml" not in files
    predictor = files["inferenceservice.yaml"]["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (4, 4)
    assert "scaleMetric" not in predictor
    assert all(e["name"] != "DIABETES_API_KEYS" for e in predictor["model"]["env"])


@pytest.mark.slow
def test_kserves_own_models_accept_them_and_refuse_a_misspelt_or_mistyped_field(kserve_python, written) -> None:
    documents = [written["inferenceservice.yaml"], written["servingruntime.yaml"]]
    proc = check(kserve_python, documents)
    assert (proc.returncode, proc.stdout.strip()) == (0, "valid"), proc.stdout + proc.stderr
    # The checker can fail: a field KServe does not know at that place, a wrong type, a missing requirement.
    broken = json.loads(json.dumps(documents))
    broken[0]["spec"]["predictor"]["protocolVersion"] = broken[0]["spec"]["predictor"]["model"].pop("protocolVersion")
    broken[1]["spec"]["supportedModelFormats"][0]["autoselect"] = False
    broken[0]["spec"]["predictor"]["minReplicas"] = "1"
    del broken[0]["spec"]["predictor"]["model"]["modelFormat"]
    proc = check(kserve_python, broken)
    assert proc.returncode == 1
    problems = proc.stdout
    assert "predictor.protocolVersion: not a field of V1beta1PredictorSpec" in problems
    assert "autoselect: not a field" in problems
    assert "minReplicas: must be int" in problems
    assert "model_format" in problems
