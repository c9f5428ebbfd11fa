"""`diabetes deploy azureml`: the spec as an Azure ML deployment.

v1 (the classic example's no-code path): azureml-core's ``Model.deploy(ws, name, [model],
deployment_config=AksWebservice.deploy_configuration(...), deployment_target=AksCompute(ws, cluster))``
and, with ``--dry-run``, the ``deploymentconfig.json`` that ``az ml model deploy --dc`` reads.
v2 (supported today): a Kubernetes online endpoint and deployment as YAML for azure-ai-ml / ``az ml``.
The SDK is handed in as an `AzureSdk` so that everything up to the network call is testable.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diabetes_deploy.errors import DeployError
from diabetes_deploy.kubernetes import cpu_quantity, memory_quantity
from diabetes_deploy.spec import DeploymentSpec, Probe

V2_DEPLOYMENT_NAME = "blue"


@dataclass(frozen=True)
class AzureSdk:
    """The azureml-core classes the v1 path calls (stand-ins in the tests)."""

    Workspace: Any
    Model: Any
    AksWebservice: Any
    AksCompute: Any


def load_sdk() -> AzureSdk:
    try:
        from azureml.core import Model, Workspace
        from azureml.core.compute import AksCompute
        from azureml.core.webservice import AksWebservice
    except ImportError:
        raise DeployError(
            "the Azure ML v1 path needs azureml-core (pip install 'diabetes-scoring[azure]'); "
            "--dry-run writes deploymentconfig.json and the v2 YAML without it"
        ) from None
    return AzureSdk(Workspace, Model, AksWebservice, AksCompute)


def model_version(spec: DeploymentSpec, override: int | None) -> int:
    """Azure ML registries have versions, not MLflow aliases."""
    if override is not None:
        return override
    if spec.model.version is not None:
        return spec.model.version
    raise DeployError(
        f"model.alias {spec.model.alias!r}: Azure ML models have versions, not MLflow aliases; "
        "set model.version in the spec or pass --model-version"
    )


def aks_configuration(spec: DeploymentSpec) -> dict[str, Any]:
    """Keyword arguments for ``AksWebservice.deploy_configuration``, from the spec."""
    liveness = spec.probes.liveness
    kwargs: dict[str, Any] = {
        "cpu_cores": spec.resources.cpu_cores,
        "memory_gb": spec.resources.memory_gb,
        "auth_enabled": spec.auth.enabled,
        "scoring_timeout_ms": round(spec.scoring_timeout_seconds * 1000),
        "replica_max_concurrent_requests": spec.max_concurrent_requests,
        "period_seconds": liveness.period_seconds,
        "initial_delay_seconds": liveness.initial_delay_seconds,
        "timeout_seconds": liveness.timeout_seconds,
        "success_threshold": liveness.success_threshold,
        "failure_threshold": liveness.failure_threshold,
        "description": f"{spec.model.name} ({spec.model.framework}) served from the no-code deployment spec",
    }
    if spec.resources.limits is not None:
        kwargs["cpu_cores_limit"] = spec.resources.limits.cpu_cores
        kwargs["memory_gb_limit"] = spec.resources.limits.memory_gb
    auto = spec.scale.autoscale
    if auto is not None:
        kwargs.update(
            autoscale_enabled=True,
            autoscale_min_replicas=auto.min_replicas,
            autoscale_max_replicas=auto.max_replicas,
            autoscale_target_utilization=auto.target_utilization,
        )
    else:
        kwargs.update(autoscale_enabled=False, num_replicas=spec.scale.replicas)
    return kwargs


def deployment_config_json(spec: DeploymentSpec) -> dict[str, Any]:
    """The ``deploymentconfig.json`` of ``az ml model deploy --dc`` (azureml-core's AKS field names)."""
    kw = aks_configuration(spec)
    resources: dict[str, Any] = {"cpu": kw["cpu_cores"], "memoryInGB": kw["memory_gb"]}
    if "cpu_cores_limit" in kw:
        resources.update(cpuLimit=kw["cpu_cores_limit"], memoryInGBLimit=kw["memory_gb_limit"])
    doc: dict[str, Any] = {
        "computeType": "aks",
        "containerResourceRequirements": resources,
        "authEnabled": kw["auth_enabled"],
        "scoringTimeoutMs": kw["scoring_timeout_ms"],
        "maxConcurrentRequestsPerContainer": kw["replica_max_concurrent_requests"],
        "livenessProbeRequirements": {
            "periodSeconds": kw["period_seconds"],
            "initialDelaySeconds": kw["initial_delay_seconds"],
            "timeoutSeconds": kw["timeout_seconds"],
            "successThreshold": kw["success_threshold"],
            "failureThreshold": kw["failure_threshold"],
        },
        "description": kw["description"],
    }
    if kw["autoscale_enabled"]:
        doc["autoScaler"] = {
            "autoscaleEnabled": True,
            "minReplicas": kw["autoscale_min_replicas"],
            "maxReplicas": kw["autoscale_max_replicas"],
            "targetUtilization": kw["autoscale_target_utilization"],
        }
    else:
        doc["autoScaler"] = {"autoscaleEnabled": False}
        doc["numReplicas"] = kw["num_replicas"]
    return doc


def deploy_v1(
    spec: DeploymentSpec,
    *,
    workspace_config: str,
    cluster: str,
    version: int | None = None,
    sdk: AzureSdk | None = None,
    timeout_seconds: int = 1800,
) -> str:
    """Deploy the registered model to the AKS cluster with no scoring script; returns the scoring URI."""
    sdk = sdk or load_sdk()
    config = sdk.AksWebservice.deploy_configuration(**aks_configuration(spec))
    ws = _workspace(sdk, workspace_config)
    model = sdk.Model(ws, name=spec.model.name, version=model_version(spec, version))
    target = sdk.AksCompute(ws, cluster)
    service = sdk.Model.deploy(
        ws, spec.name, [model], deployment_config=config, deployment_target=target, overwrite=True
    )
    service.wait_for_deployment(show_output=False, timeout_sec=timeout_seconds)
    if getattr(service, "state", "Healthy") != "Healthy":
        raise DeployError(f"service {spec.name} ended {service.state}: see its logs in the workspace")
    return str(service.scoring_uri)


def delete_v1(spec: DeploymentSpec, *, workspace_config: str, sdk: AzureSdk | None = None) -> None:
    """Remove the service (the example's clean-up step); the registered model stays."""
    sdk = sdk or load_sdk()
    ws = _workspace(sdk, workspace_config)
    sdk.AksWebservice(ws, spec.name).delete()


def _workspace(sdk: AzureSdk, workspace_config: str) -> Any:
    if not os.path.isfile(workspace_config):
        raise DeployError(f"{workspace_config}: no such workspace config (download config.json from the portal)")
    return sdk.Workspace.from_config(path=workspace_config)


def _v2_probe(probe: Probe) -> dict[str, int]:
    return {
        "initial_delay": probe.initial_delay_seconds,
        "period": probe.period_seconds,
        "timeout": probe.timeout_seconds,
        "success_threshold": probe.success_threshold,
        "failure_threshold": probe.failure_threshold,
    }


def v2_documents(spec: DeploymentSpec, *, cluster: str, version: int | None = None) -> dict[str, dict[str, Any]]:
    """Kubernetes online endpoint + deployment for azure-ai-ml (`az ml online-endpoint/-deployment`)."""
    endpoint = {
        "name": spec.name,
        "compute": f"azureml:{cluster}",
        # v2 endpoints always authenticate; keys are the Azure ML equivalent of DIABETES_API_KEYS.
        "auth_mode": "key",
        "description": f"{spec.model.name} from the no-code deployment spec",
    }
    resources: dict[str, Any] = {
        "requests": {"cpu": cpu_quantity(spec.resources.cpu_cores), "memory": memory_quantity(spec.resources.memory_gb)}
    }
    if spec.resources.limits is not None:
        resources["limits"] = {
            "cpu": cpu_quantity(spec.resources.limits.cpu_cores),
            "memory": memory_quantity(spec.resources.limits.memory_gb),
        }
    deployment: dict[str, Any] = {
        "name": V2_DEPLOYMENT_NAME,
        "type": "kubernetes",
        "endpoint_name": spec.name,
        # An MLflow model needs no scoring script or environment: the no-code path.
        "model": f"azureml:{spec.model.name}:{model_version(spec, version)}",
        "resources": resources,
        "request_settings": {
            "request_timeout_ms": round(spec.scoring_timeout_seconds * 1000),
            "max_concurrent_requests_per_instance": spec.max_concurrent_requests,
        },
        "liveness_probe": _v2_probe(spec.probes.liveness),
        "readiness_probe": _v2_probe(spec.probes.readiness),
    }
    auto = spec.scale.autoscale
    if auto is not None:
        deployment["instance_count"] = auto.min_replicas
        deployment["scale_settings"] = {
            "type": "target_utilization",
            "min_instances": auto.min_replicas,
            "max_instances": auto.max_replicas,
            "target_utilization_percentage": auto.target_utilization,
        }
    else:
        deployment["instance_count"] = spec.scale.replicas
        deployment["scale_settings"] = {"type": "default"}
    return {"endpoint.yaml": endpoint, "deployment.yaml": deployment}


def write_dry_run(spec: DeploymentSpec, out: Path, *, cluster: str, version: int | None = None) -> list[Path]:
    """deploymentconfig.json (v1) and v2/endpoint.yaml + v2/deployment.yaml; nothing is sent anywhere."""
    import yaml

    config = json.dumps(deployment_config_json(spec), indent=2) + "\n"
    documents = v2_documents(spec, cluster=cluster, version=version)
    v2 = {name: yaml.safe_dump(doc, sort_keys=False) for name, doc in documents.items()}
    try:
        (out / "v2").mkdir(parents=True, exist_ok=True)
        written = [out / "deploymentconfig.json", *(out / "v2" / name for name in v2)]
        written[0].write_text(config)
        for name, text in v2.items():
            (out / "v2" / name).write_text(text)
    except OSError as exc:
        raise DeployError(f"cannot write into {out}: {exc.strerror or exc}") from None
    return written
