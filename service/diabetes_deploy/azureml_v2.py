"""`diabetes deploy azureml --v2`: the spec as an Azure ML online endpoint and deployment (azure-ai-ml).

A managed online endpoint by default, or a Kubernetes online endpoint on an attached AKS cluster
(``--kubernetes-compute``). The deployment serves either the registered MLflow model with Azure's
own no-code MLflow serving, or our image as a custom container (the same routes and probes as on
Kubernetes). Everything is built as azure-ai-ml's own entities and sent through ``MLClient``; the
tests hand in an ``MLClient`` whose HTTP session records the requests instead of sending them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from diabetes_deploy.azureml import V2_DEPLOYMENT_NAME, model_version
from diabetes_deploy.errors import DeployError
from diabetes_deploy.kubernetes import CONTAINER_PORT, cpu_quantity, memory_quantity
from diabetes_deploy.spec import DeploymentSpec, Probe

Serving = Literal["mlflow", "container"]

# Azure ML online endpoints answer 408 past this, whatever the deployment asks for.
MAX_REQUEST_TIMEOUT_MS = 180_000
# General-purpose sizes Azure ML lists for managed online deployments: (name, cores, GiB), smallest first.
# The spec asks for cores and memory; a managed deployment takes a VM size: the smallest that covers both.
# Smaller sizes exist, but azure-ai-ml warns below DS3_v2 (the OS and Azure's agents share the VM).
INSTANCE_TYPES = (
    ("Standard_DS3_v2", 4, 14.0),
    ("Standard_DS4_v2", 8, 28.0),
    ("Standard_DS5_v2", 16, 56.0),
    ("Standard_E16s_v3", 16, 128.0),
    ("Standard_E32s_v3", 32, 256.0),
)


@dataclass(frozen=True)
class V2Options:
    """What the command line adds to the spec."""

    serving: Serving = "mlflow"
    kubernetes_compute: str | None = None
    image: str | None = None  # the custom container's image, in a registry the workspace can pull from
    instance_type: str | None = None  # overrides the size picked from the spec
    version: int | None = None  # the registered model's version (the spec's, else this)


def instance_type_for(spec: DeploymentSpec) -> str:
    """The smallest listed VM size with the spec's cores and memory (its limits, where it has them)."""
    cores, memory = spec.resources.cpu_limit, spec.resources.memory_limit_gb
    for name, have_cores, have_memory in INSTANCE_TYPES:
        if have_cores >= cores and have_memory >= memory:
            return name
    raise DeployError(
        f"resources: no listed managed instance type has {cores:g} cores and {memory:g} GB: pass --instance-type"
    )


def _probe(probe: Probe) -> Any:
    from azure.ai.ml.entities import ProbeSettings

    return ProbeSettings(
        initial_delay=probe.initial_delay_seconds,
        period=probe.period_seconds,
        timeout=probe.timeout_seconds,
        success_threshold=probe.success_threshold,
        failure_threshold=probe.failure_threshold,
    )


def endpoint_entity(spec: DeploymentSpec, options: V2Options) -> Any:
    from azure.ai.ml.entities import KubernetesOnlineEndpoint, ManagedOnlineEndpoint

    common: dict[str, Any] = {
        "name": spec.name,
        # v2 endpoints always authenticate; their keys play the part of DIABETES_API_KEYS.
        "auth_mode": "key",
        "description": f"{spec.model.name} from the no-code deployment spec",
        "tags": {"part-of": "diabetes-scoring"},
    }
    if options.kubernetes_compute:
        return KubernetesOnlineEndpoint(compute=options.kubernetes_compute, **common)
    return ManagedOnlineEndpoint(**common)


def _container_environment(spec: DeploymentSpec, image: str) -> Any:
    from azure.ai.ml.entities import Environment

    route = {"port": CONTAINER_PORT}
    return Environment(
        name=f"{spec.name}-image",
        image=image,
        # The service's own routes: Azure's gateway probes and forwards to them inside the container.
        inference_config={
            "liveness_route": {**route, "path": "/"},
            "readiness_route": {**route, "path": "/health/ready"},
            "scoring_route": {**route, "path": "/score"},
        },
    )


def deployment_entity(spec: DeploymentSpec, options: V2Options) -> Any:
    from azure.ai.ml.entities import (
        DefaultScaleSettings,
        KubernetesOnlineDeployment,
        ManagedOnlineDeployment,
        OnlineRequestSettings,
        ResourceRequirementsSettings,
        ResourceSettings,
        TargetUtilizationScaleSettings,
    )

    timeout_ms = round(spec.scoring_timeout_seconds * 1000)
    if timeout_ms > MAX_REQUEST_TIMEOUT_MS:
        raise DeployError(
            f"scoring_timeout_seconds: {spec.scoring_timeout_seconds:g} is over Azure ML online endpoints' "
            f"{MAX_REQUEST_TIMEOUT_MS // 1000} s request timeout"
        )
    kwargs: dict[str, Any] = {
        "name": V2_DEPLOYMENT_NAME,
        "endpoint_name": spec.name,
        "description": f"{spec.model.name} ({options.serving}) from the no-code deployment spec",
        "request_settings": OnlineRequestSettings(
            request_timeout_ms=timeout_ms,
            max_concurrent_requests_per_instance=spec.max_concurrent_requests,
        ),
        "liveness_probe": _probe(spec.probes.liveness),
        "readiness_probe": _probe(spec.probes.readiness),
        "instance_count": spec.scale.min_replicas,
    }
    if options.serving == "mlflow":
        # An MLflow model needs no scoring script and no environment: Azure's no-code serving.
        kwargs["model"] = f"azureml:{spec.model.name}:{model_version(spec, options.version)}"
    else:
        if not options.image:
            raise DeployError("--serving container needs --image REGISTRY/NAME:TAG (built by `diabetes deploy local`)")
        kwargs["environment"] = _container_environment(spec, options.image)
        kwargs["environment_variables"] = {
            "DIABETES_SERVICE_NAME": spec.name,
            "DIABETES_GRACEFUL_TIMEOUT_SECONDS": f"{spec.scoring_timeout_seconds:g}",
        }
    auto = spec.scale.autoscale
    if options.kubernetes_compute:
        requests = ResourceSettings(
            cpu=cpu_quantity(spec.resources.cpu_cores), memory=memory_quantity(spec.resources.memory_gb)
        )
        limits = None
        if spec.resources.limits is not None:
            limits = ResourceSettings(
                cpu=cpu_quantity(spec.resources.limits.cpu_cores),
                memory=memory_quantity(spec.resources.limits.memory_gb),
            )
        kwargs["resources"] = ResourceRequirementsSettings(requests=requests, limits=limits)
        if options.instance_type:
            kwargs["instance_type"] = options.instance_type  # an instance type defined on the cluster
        kwargs["scale_settings"] = (
            TargetUtilizationScaleSettings(
                min_instances=auto.min_replicas,
                max_instances=auto.max_replicas,
                target_utilization_percentage=auto.target_utilization,
            )
            if auto is not None
            else DefaultScaleSettings()
        )
        return KubernetesOnlineDeployment(**kwargs)
    # Managed deployments scale only by Azure Monitor autoscale rules: they start at min_replicas.
    kwargs["instance_type"] = options.instance_type or instance_type_for(spec)
    kwargs["scale_settings"] = DefaultScaleSettings()
    return ManagedOnlineDeployment(**kwargs)


def ml_client_from_config(workspace_config: str) -> Any:
    """`MLClient.from_config` with the default Azure credential chain (az login, managed identity...)."""
    if not Path(workspace_config).is_file():
        raise DeployError(f"{workspace_config}: no such workspace config (download config.json from the portal)")
    try:
        from azure.ai.ml import MLClient
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise DeployError("the Azure ML v2 path needs azure-ai-ml: pip install azure-ai-ml azure-identity") from None
    return MLClient.from_config(credential=DefaultAzureCredential(), path=workspace_config)


def deploy_v2(spec: DeploymentSpec, ml_client: Any, options: V2Options) -> str:
    """Create or update the endpoint, then the deployment, then send it all traffic; returns the scoring URI."""
    endpoint = endpoint_entity(spec, options)
    deployment = deployment_entity(spec, options)  # checked before anything is sent
    try:
        ml_client.online_endpoints.begin_create_or_update(endpoint).result()
        ml_client.online_deployments.begin_create_or_update(deployment).result()
        # Traffic moves once the deployment is up, so a failed update leaves the old one serving.
        endpoint.traffic = {V2_DEPLOYMENT_NAME: 100}
        ml_client.online_endpoints.begin_create_or_update(endpoint).result()
        uri = ml_client.online_endpoints.get(spec.name).scoring_uri
    except DeployError:
        raise
    except Exception as exc:  # azure-core's HttpResponseError and friends carry the service's reason
        raise DeployError(f"Azure ML endpoint {spec.name}: {type(exc).__name__}: {_first_line(exc)}") from None
    if not uri:
        raise DeployError(f"Azure ML endpoint {spec.name} has no scoring URI: see its deployment logs")
    return str(uri)


def delete_v2(spec: DeploymentSpec, ml_client: Any) -> None:
    """Delete the endpoint and its deployments; the registered model stays."""
    try:
        ml_client.online_endpoints.begin_delete(name=spec.name).result()
    except Exception as exc:
        raise DeployError(f"Azure ML endpoint {spec.name}: {type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no details"
