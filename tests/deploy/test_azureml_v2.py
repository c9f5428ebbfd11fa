"""`diabetes deploy azureml --v2`: azure-ai-ml's own MLClient, entities and REST bodies, up to the socket.

No Azure ML workspace is reachable here: the MLClient's HTTP session ends in `azure_wire.Wire`, which
records what would go to Azure Resource Manager. The assertions are on those recorded requests, in
the REST API's own field names, so a change in what we build or in how azure-ai-ml sends it shows.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from diabetes_deploy.azureml_v2 import (
    INSTANCE_TYPES,
    V2Options,
    delete_v2,
    deploy_v2,
    deployment_entity,
    instance_type_for,
)
from diabetes_deploy.errors import DeployError
from diabetes_deploy.spec import load_spec, parse_spec
from tests.deploy.azure_wire import LOCATION, Wire, ml_client
from tests.support.processes import DIABETES, REPO

SPEC = REPO / "service" / "deployment.yaml"
ENDPOINT = "/onlineEndpoints/diabetes-service"
DEPLOYMENT = ENDPOINT + "/deployments/blue"


@pytest.fixture
def wire() -> Wire:
    return Wire()


def test_managed_endpoint_serving_the_registered_mlflow_model(wire: Wire) -> None:
    uri = deploy_v2(load_spec(SPEC), ml_client(wire), V2Options(version=3))
    assert uri == f"https://diabetes-service.{LOCATION}.inference.ml.azure.com/score"
    # Endpoint first (no traffic), then the deployment, then all traffic to it.
    puts = [c for c in wire.calls if c.method == "PUT"]
    assert [c.path.split("/workspaces/ws")[1] for c in puts] == [ENDPOINT, DEPLOYMENT, ENDPOINT]
    first, deployment, last = (c.body for c in puts)
    assert first["properties"]["authMode"] == "Key"
    assert first["properties"]["traffic"] == {}
    assert "compute" not in first["properties"]  # managed: Azure runs the VMs
    assert last["properties"]["traffic"] == {"blue": 100}
    props = deployment["properties"]
    assert props["endpointComputeType"] == "Managed"
    assert props["model"].endswith("/workspaces/ws/models/diabetes_model/versions/3")
    assert "environmentId" not in props  # no environment or scoring script: Azure's no-code MLflow serving
    # The spec's limits (2 cores, 2 GB) on the smallest recommended size that has them.
    assert props["instanceType"] == "Standard_DS3_v2"
    assert deployment["sku"] == {"name": "Default", "capacity": 1}  # autoscale's min_replicas
    assert props["scaleSettings"] == {"scaleType": "Default"}
    assert props["requestSettings"] == {"maxConcurrentRequestsPerInstance": 8, "requestTimeout": "PT30S"}
    assert props["readinessProbe"] == {
        "failureThreshold": 3,
        "successThreshold": 1,
        "timeout": "PT2S",
        "period": "PT5S",
        "initialDelay": "PT2S",
    }
    assert props["livenessProbe"]["period"] == "PT10S"
    assert props["livenessProbe"]["initialDelay"] == "PT10S"
    # Every call is authorised with the credential's token, never with an endpoint key.
    assert all(c.headers.get("Authorization") == "Bearer recorded-token" for c in wire.calls)


def test_kubernetes_endpoint_with_our_image_as_a_custom_container(wire: Wire) -> None:
    options = V2Options(serving="container", image="reg.example/diabetes-service:1", kubernetes_compute="aks-prod")
    deploy_v2(load_spec(SPEC), ml_client(wire), options)
    (endpoint, *_) = wire.named("PUT", ENDPOINT)
    assert endpoint.body["properties"]["compute"].endswith("/workspaces/ws/computes/aks-prod")
    (environment,) = wire.named("PUT", "/environments/diabetes-service-image/versions/1")
    assert environment.body["properties"]["image"] == "reg.example/diabetes-service:1"
    # Azure's gateway probes and forwards to the service's own routes on its port.
    assert environment.body["properties"]["inferenceConfig"] == {
        "livenessRoute": {"port": 8080, "path": "/"},
        "readinessRoute": {"port": 8080, "path": "/health/ready"},
        "scoringRoute": {"port": 8080, "path": "/score"},
    }
    (deployment,) = wire.named("PUT", DEPLOYMENT)
    props = deployment.body["properties"]
    assert props["endpointComputeType"] == "Kubernetes"
    assert props["environmentId"].endswith("/environments/diabetes-service-image/versions/1")
    assert "model" not in props  # the image carries its model
    assert props["containerResourceRequirements"] == {
        "containerResourceRequests": {"cpu": "1", "memory": "1024Mi"},
        "containerResourceLimits": {"cpu": "2", "memory": "2048Mi"},
    }
    assert props["scaleSettings"] == {
        "scaleType": "TargetUtilization",
        "minInstances": 1,
        "maxInstances": 3,
        "targetUtilizationPercentage": 70,
    }
    assert props["environmentVariables"]["DIABETES_SERVICE_NAME"] == "diabetes-service"
    assert not any("KEYS" in name for name in props["environmentVariables"])  # Azure's keys guard it


def test_fixed_replicas_and_an_explicit_instance_type(wire: Wire) -> None:
    spec = parse_spec({"name": "abc", "model": {"name": "m", "version": 2}, "scale": {"replicas": 4}})
    deploy_v2(spec, ml_client(wire), V2Options(instance_type="Standard_F4s_v2"))
    (deployment,) = wire.named("PUT", "/onlineEndpoints/abc/deployments/blue")
    assert deployment.body["sku"]["capacity"] == 4
    assert deployment.body["properties"]["instanceType"] == "Standard_F4s_v2"
    assert deployment.body["properties"]["model"].endswith("/models/m/versions/2")


def test_delete_removes_the_endpoint(wire: Wire) -> None:
    client = ml_client(wire)
    deploy_v2(load_spec(SPEC), client, V2Options(version=1))
    assert any(p.endswith(DEPLOYMENT) for p in wire.resources)
    delete_v2(load_spec(SPEC), client)
    (deleted,) = wire.named("DELETE", ENDPOINT)
    assert deleted.body is None
    assert not wire.resources  # the deployment went with its endpoint


def test_nothing_is_sent_when_the_spec_cannot_be_deployed(wire: Wire) -> None:
    with pytest.raises(DeployError, match="versions, not MLflow aliases"):
        deploy_v2(load_spec(SPEC), ml_client(wire), V2Options())
    with pytest.raises(DeployError, match="--image"):
        deploy_v2(load_spec(SPEC), ml_client(wire), V2Options(serving="container"))
    slow = parse_spec(
        {
            "name": "abc",
            "model": {"name": "m", "version": 1},
            "scoring_timeout_seconds": 200,
            "probes": {"termination_grace_period_seconds": 300},
        }
    )
    with pytest.raises(DeployError, match="scoring_timeout_seconds: 200 is over"):
        deploy_v2(slow, ml_client(wire), V2Options())
    assert wire.calls == []


def test_a_refused_deployment_is_one_line_and_moves_no_traffic(wire: Wire) -> None:
    wire.refuse["/deployments/blue"] = (400, "BadArgument", "Not enough quota for Standard_DS3_v2\nsecond line")
    with pytest.raises(DeployError) as caught:
        deploy_v2(load_spec(SPEC), ml_client(wire), V2Options(version=1))
    message = str(caught.value)
    assert message.startswith("Azure ML endpoint diabetes-service: HttpResponseError: ")
    assert "Not enough quota" in message
    assert "\n" not in message
    # The endpoint was created, but traffic never moved to the refused deployment.
    assert [c.body["properties"]["traffic"] for c in wire.named("PUT", ENDPOINT)] == [{}]


def test_instance_type_is_the_smallest_that_covers_the_spec() -> None:
    def spec(cores: float, memory: float):
        resources = {"cpu_cores": cores, "memory_gb": memory}
        return parse_spec({"name": "abc", "model": {"name": "m", "version": 1}, "resources": resources})

    assert instance_type_for(spec(1, 1)) == INSTANCE_TYPES[0][0]
    assert instance_type_for(spec(4, 20)) == "Standard_DS4_v2"  # memory decides
    assert instance_type_for(spec(20, 100)) == "Standard_E32s_v3"
    with pytest.raises(DeployError, match="--instance-type"):
        instance_type_for(spec(64, 200))


def test_deployment_entity_round_trips_through_azure_ai_mls_yaml(tmp_path: Path) -> None:
    """The entity we build dumps to YAML that azure-ai-ml loads back as the same deployment."""
    from azure.ai.ml import load_online_deployment

    built = deployment_entity(load_spec(SPEC), V2Options(version=5, kubernetes_compute="aks"))
    path = tmp_path / "deployment.yaml"
    built.dump(path)
    loaded = load_online_deployment(path)
    assert loaded.model == "diabetes_model:5"  # the loader drops the azureml: prefix
    assert built.model == "azureml:diabetes_model:5"
    assert loaded.scale_settings.max_instances == 3
    assert loaded.request_settings.request_timeout_ms == 30000
    assert loaded.resources.limits.memory == "2048Mi"


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    return subprocess.run(
        [DIABETES, "deploy", "azureml", "--spec", str(SPEC), "--v2", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=cwd,
    )


def test_cli_checks_the_spec_and_the_config_before_any_call(tmp_path: Path) -> None:
    alias = run_cli(cwd=tmp_path)
    assert alias.returncode == 1
    assert alias.stderr.strip().splitlines() == [
        "diabetes deploy: model.alias 'champion': Azure ML models have versions, not MLflow aliases; "
        "set model.version in the spec or pass --model-version"
    ]
    no_image = run_cli("--model-version", "1", "--serving", "container", cwd=tmp_path)
    assert no_image.returncode == 1
    assert "--serving container needs --image" in no_image.stderr
    no_config = run_cli("--model-version", "1", cwd=tmp_path)
    assert no_config.returncode == 1
    assert no_config.stderr.strip() == (
        "diabetes deploy: config.json: no such workspace config (download config.json from the portal)"
    )
    delete = run_cli("--delete", "--workspace-config", str(tmp_path / "none.json"), cwd=tmp_path)
    assert delete.returncode == 1
    assert "no such workspace config" in delete.stderr
