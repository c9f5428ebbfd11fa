"""`diabetes deploy azureml`: v1 objects and arguments up to the network call; files for `az ml` and azure-ai-ml.

azureml-core cannot be installed beside MLflow here, and no workspace is reachable: the v1 path runs
against stand-ins with azureml-core's own names and signatures, recording what would be sent.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from diabetes_deploy.azureml import AzureSdk, aks_configuration, delete_v1, deploy_v1, deployment_config_json
from diabetes_deploy.errors import DeployError
from diabetes_deploy.spec import load_spec, parse_spec
from tests.support.processes import DIABETES, REPO

SPEC = REPO / "service" / "deployment.yaml"
# AksWebservice.deploy_configuration's keyword arguments in azureml-core 1.57+.
AKS_DEPLOY_CONFIGURATION_ARGS = frozenset(
    {
        "autoscale_enabled",
        "autoscale_min_replicas",
        "autoscale_max_replicas",
        "autoscale_refresh_seconds",
        "autoscale_target_utilization",
        "collect_model_data",
        "auth_enabled",
        "cpu_cores",
        "memory_gb",
        "enable_app_insights",
        "scoring_timeout_ms",
        "replica_max_concurrent_requests",
        "max_request_wait_time",
        "num_replicas",
        "primary_key",
        "secondary_key",
        "tags",
        "properties",
        "description",
        "gpu_cores",
        "period_seconds",
        "initial_delay_seconds",
        "timeout_seconds",
        "success_threshold",
        "failure_threshold",
        "namespace",
        "token_auth_enabled",
        "compute_target_name",
        "cpu_cores_limit",
        "memory_gb_limit",
        "blobfuse_enabled",
    }
)


def read_deployment_config(doc: dict[str, Any]) -> dict[str, Any]:
    """What azureml-core's deploy-config reader hands to deploy_configuration for computeType aks."""
    auto = doc.get("autoScaler", {})
    resources = doc.get("containerResourceRequirements", {})
    probe = doc.get("livenessProbeRequirements", {})
    kwargs = {
        "autoscale_enabled": auto.get("autoscaleEnabled"),
        "autoscale_min_replicas": auto.get("minReplicas"),
        "autoscale_max_replicas": auto.get("maxReplicas"),
        "autoscale_target_utilization": auto.get("targetUtilization"),
        "auth_enabled": doc.get("authEnabled"),
        "cpu_cores": resources.get("cpu"),
        "memory_gb": resources.get("memoryInGB"),
        "cpu_cores_limit": resources.get("cpuLimit"),
        "memory_gb_limit": resources.get("memoryInGBLimit"),
        "scoring_timeout_ms": doc.get("scoringTimeoutMs"),
        "replica_max_concurrent_requests": doc.get("maxConcurrentRequestsPerContainer"),
        "num_replicas": doc.get("numReplicas"),
        "period_seconds": probe.get("periodSeconds"),
        "initial_delay_seconds": probe.get("initialDelaySeconds"),
        "timeout_seconds": probe.get("timeoutSeconds"),
        "success_threshold": probe.get("successThreshold"),
        "failure_threshold": probe.get("failureThreshold"),
        "description": doc.get("description"),
    }
    return {k: v for k, v in kwargs.items() if v is not None}


class Recorder:
    """A stand-in azureml-core: same class names, constructors and methods, every call recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        rec = self

        class Workspace:
            @staticmethod
            def from_config(path: str | None = None) -> Workspace:
                rec.calls.append(("Workspace.from_config", path))
                ws = Workspace()
                rec.ws = ws
                return ws

        class Model:
            def __init__(self, workspace: Any, name: str | None = None, version: int | None = None) -> None:
                rec.calls.append(("Model", (workspace, name, version)))
                self.workspace, self.name, self.version = workspace, name, version

            @staticmethod
            def deploy(workspace: Any, name: str, models: list, **kwargs: Any) -> Service:
                rec.calls.append(("Model.deploy", (workspace, name, models, kwargs)))
                return Service(name)

        class Service:
            def __init__(self, name: str) -> None:
                self.name = name
                self.state = "Transitioning"
                self.scoring_uri = f"http://aks.example/api/v1/service/{name}/score"

            def wait_for_deployment(self, show_output: bool = False, timeout_sec: int | None = None) -> None:
                rec.calls.append(("wait_for_deployment", timeout_sec))
                self.state = rec.final_state

        class DeploymentConfiguration:
            def __init__(self, **kwargs: Any) -> None:
                self.kwargs = kwargs

        class AksWebservice:
            def __init__(self, workspace: Any, name: str) -> None:
                rec.calls.append(("AksWebservice", (workspace, name)))

            @staticmethod
            def deploy_configuration(**kwargs: Any) -> DeploymentConfiguration:
                unknown = set(kwargs) - AKS_DEPLOY_CONFIGURATION_ARGS
                if unknown:
                    raise TypeError(f"deploy_configuration() got unexpected keyword arguments {sorted(unknown)}")
                rec.calls.append(("AksWebservice.deploy_configuration", kwargs))
                return DeploymentConfiguration(**kwargs)

            def delete(self) -> None:
                rec.calls.append(("AksWebservice.delete", None))

        class AksCompute:
            def __init__(self, workspace: Any, name: str) -> None:
                rec.calls.append(("AksCompute", (workspace, name)))
                self.workspace, self.name = workspace, name

        self.final_state = "Healthy"
        self.ws: Any = None
        self.sdk = AzureSdk(Workspace, Model, AksWebservice, AksCompute)

    def named(self, name: str) -> list[Any]:
        return [args for call, args in self.calls if call == name]


@pytest.fixture
def workspace_config(tmp_path: Path) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"subscription_id": "sub", "resource_group": "rg", "workspace_name": "ws"}))
    return str(path)


def test_v1_deploy_builds_the_examples_objects(workspace_config: str) -> None:
    spec = parse_spec(
        {
            "name": "diabetes-service",
            "model": {"name": "diabetes_model", "version": 1},
            "resources": {"cpu_cores": 1, "memory_gb": 1},
            "scale": {"replicas": 1},
            "auth": {"enabled": True},
        }
    )
    azure = Recorder()
    uri = deploy_v1(spec, workspace_config=workspace_config, cluster="aks-cluster", sdk=azure.sdk)
    assert uri == "http://aks.example/api/v1/service/diabetes-service/score"
    assert azure.named("Workspace.from_config") == [workspace_config]
    (config_kwargs,) = azure.named("AksWebservice.deploy_configuration")
    assert config_kwargs["cpu_cores"] == 1
    assert config_kwargs["memory_gb"] == 1
    assert config_kwargs["auth_enabled"] is True
    assert config_kwargs["autoscale_enabled"] is False
    assert config_kwargs["num_replicas"] == 1
    assert config_kwargs["scoring_timeout_ms"] == 30000
    assert "cpu_cores_limit" not in config_kwargs
    assert not {"primary_key", "secondary_key"} & set(config_kwargs)  # Azure generates the keys
    (model_args,) = azure.named("Model")
    assert model_args == (azure.ws, "diabetes_model", 1)
    (compute_args,) = azure.named("AksCompute")
    assert compute_args == (azure.ws, "aks-cluster")
    ((ws, name, models, kwargs),) = azure.named("Model.deploy")
    assert ws is azure.ws
    assert name == "diabetes-service"
    assert [(m.name, m.version) for m in models] == [("diabetes_model", 1)]
    assert kwargs["deployment_config"].kwargs == config_kwargs
    assert kwargs["deployment_target"].name == "aks-cluster"
    assert kwargs["overwrite"] is True
    # No inference_config: the no-code path for a ScikitLearn-registered model.
    assert "inference_config" not in kwargs
    assert [call for call, _ in azure.calls][-1] == "wait_for_deployment"


def test_v1_autoscale_and_limits_from_the_shipped_spec(workspace_config: str) -> None:
    azure = Recorder()
    deploy_v1(load_spec(SPEC), workspace_config=workspace_config, cluster="c1", version=7, sdk=azure.sdk)
    (kwargs,) = azure.named("AksWebservice.deploy_configuration")
    assert kwargs["autoscale_enabled"] is True
    assert (kwargs["autoscale_min_replicas"], kwargs["autoscale_max_replicas"]) == (1, 3)
    assert kwargs["autoscale_target_utilization"] == 70
    assert (kwargs["cpu_cores_limit"], kwargs["memory_gb_limit"]) == (2.0, 2.0)
    assert "num_replicas" not in kwargs
    assert azure.named("Model")[0][1:] == ("diabetes_model", 7)


def test_v1_alias_needs_a_version(workspace_config: str) -> None:
    azure = Recorder()
    with pytest.raises(DeployError, match="versions, not MLflow aliases"):
        deploy_v1(load_spec(SPEC), workspace_config=workspace_config, cluster="c1", sdk=azure.sdk)
    assert azure.named("Model.deploy") == []


def test_v1_unhealthy_service_is_an_error(workspace_config: str) -> None:
    azure = Recorder()
    azure.final_state = "Failed"
    with pytest.raises(DeployError, match="ended Failed"):
        deploy_v1(load_spec(SPEC), workspace_config=workspace_config, cluster="c1", version=1, sdk=azure.sdk)


def test_v1_missing_workspace_config(tmp_path: Path) -> None:
    azure = Recorder()
    with pytest.raises(DeployError, match="no such workspace config"):
        deploy_v1(load_spec(SPEC), workspace_config=str(tmp_path / "none.json"), cluster="c", version=1, sdk=azure.sdk)
    assert azure.named("Model.deploy") == []


def test_v1_delete(workspace_config: str) -> None:
    azure = Recorder()
    delete_v1(load_spec(SPEC), workspace_config=workspace_config, sdk=azure.sdk)
    assert azure.named("AksWebservice") == [(azure.ws, "diabetes-service")]
    assert azure.named("AksWebservice.delete") == [None]


def test_deploymentconfig_json_reads_back_as_the_same_configuration() -> None:
    for spec in (
        load_spec(SPEC),
        parse_spec({"name": "abc", "model": {"name": "m", "version": 1}, "scale": {"replicas": 2}}),
    ):
        doc = deployment_config_json(spec)
        assert doc["computeType"] == "aks"
        # az ml model deploy --dc builds the same deploy_configuration as the SDK path.
        assert read_deployment_config(doc) == aks_configuration(spec)


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DIABETES_API_KEYS"}
    return subprocess.run(
        [DIABETES, "deploy", "azureml", "--spec", str(SPEC), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )


def test_dry_run_writes_files_loaded_back_by_azure_ai_ml(tmp_path: Path) -> None:
    from azure.ai.ml import load_online_deployment, load_online_endpoint
    from azure.ai.ml.entities import KubernetesOnlineDeployment, KubernetesOnlineEndpoint

    out = tmp_path / "azureml"
    proc = run_cli("--dry-run", "--out", str(out), "--cluster", "aks-prod", "--model-version", "4")
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "deploymentconfig.json").read_text())
    assert config["containerResourceRequirements"] == {
        "cpu": 1.0,
        "memoryInGB": 1.0,
        "cpuLimit": 2.0,
        "memoryInGBLimit": 2.0,
    }
    assert config["authEnabled"] is True

    endpoint = load_online_endpoint(out / "v2" / "endpoint.yaml")
    assert isinstance(endpoint, KubernetesOnlineEndpoint)
    assert (endpoint.name, endpoint.compute, endpoint.auth_mode) == ("diabetes-service", "aks-prod", "key")
    deployment = load_online_deployment(out / "v2" / "deployment.yaml")
    assert isinstance(deployment, KubernetesOnlineDeployment)
    assert deployment.endpoint_name == "diabetes-service"
    assert deployment.model == "diabetes_model:4"  # the loader drops the azureml: prefix
    assert deployment.resources.requests.cpu == "1"
    assert deployment.resources.requests.memory == "1024Mi"
    assert deployment.resources.limits.cpu == "2"
    assert deployment.scale_settings.type == "target_utilization"
    assert (deployment.scale_settings.min_instances, deployment.scale_settings.max_instances) == (1, 3)
    assert deployment.scale_settings.target_utilization_percentage == 70
    assert deployment.request_settings.request_timeout_ms == 30000
    assert deployment.request_settings.max_concurrent_requests_per_instance == 8
    assert deployment.readiness_probe.period == 5
    assert deployment.liveness_probe.period == 10


def test_azure_ai_ml_rejects_what_it_does_not_know(tmp_path: Path) -> None:
    # The loader really validates: the same file with a misspelt field is refused.
    from azure.ai.ml import load_online_deployment

    out = tmp_path / "azureml"
    assert run_cli("--dry-run", "--out", str(out), "--model-version", "1").returncode == 0
    doc = yaml.safe_load((out / "v2" / "deployment.yaml").read_text())
    doc["instance_counts"] = 2
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc))
    with pytest.raises(Exception, match="instance_counts"):
        load_online_deployment(bad)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    no_out = run_cli("--dry-run")
    assert no_out.returncode == 1
    assert no_out.stderr.strip() == "diabetes deploy: --dry-run needs --out DIR"
    alias = run_cli("--dry-run", "--out", str(tmp_path / "x"))
    assert alias.returncode == 1
    assert "set model.version in the spec or pass --model-version" in alias.stderr
    assert len(alias.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
    # azureml-core is not installable here: the live path says what it needs, in one line.
    live = run_cli("--model-version", "1", cwd=tmp_path)
    assert live.returncode == 1
    assert live.stderr.strip().splitlines() == [live.stderr.strip()]
    assert "azureml-core" in live.stderr or "workspace config" in live.stderr
