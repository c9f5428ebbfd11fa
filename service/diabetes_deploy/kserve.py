"""`diabetes deploy kubernetes --kserve`: the spec as a KServe `InferenceService` and its `ServingRuntime`.

KServe's schema declares the protocol on a model, not on a bare custom container: a predictor's
`model` names its `protocolVersion` and a runtime, and the runtime (serving.kserve.io/v1alpha1) says
which image serves which protocols. So the InferenceService (serving.kserve.io/v1beta1) has a
predictor model with `protocolVersion: v2` served by `NAME-runtime`, a ServingRuntime whose one
container is our image (the model is baked in: no storageUri, no storage initializer) and which
declares `v2` and `grpc-v2`. The spec's resources, replicas (or CPU autoscaling), probes, grace period
and settings carry over as on the plain Deployment (kubernetes.py); the keys come from the same
Secret. KServe routes one port per predictor: REST on 8080; the container still serves gRPC on the
spec's `grpc_port` inside the cluster.
"""

from __future__ import annotations

from typing import Any

from diabetes_deploy.kubernetes import (
    CONTAINER_PORT,
    KEYS_ENV,
    SECRET_KEY,
    container_resources,
    container_security,
    labels,
    probe,
    secret_name,
)
from diabetes_deploy.spec import DeploymentSpec, serving_environment

API_VERSION = "serving.kserve.io/v1beta1"
RUNTIME_API_VERSION = "serving.kserve.io/v1alpha1"
CONTAINER_NAME = "kserve-container"  # the name KServe gives (and expects of) a predictor's container
MODEL_FORMAT = "sklearn"


def runtime_name(spec: DeploymentSpec) -> str:
    return f"{spec.name}-runtime"


def serving_runtime(spec: DeploymentSpec, image: str) -> dict[str, Any]:
    container = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        # Endpoints drop the pod while it sleeps; SIGTERM then drains what is still in flight.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(spec.probes.pre_stop_seconds)]}}},
        "securityContext": container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
    return {
        "apiVersion": RUNTIME_API_VERSION,
        "kind": "ServingRuntime",
        "metadata": {"name": runtime_name(spec), "labels": labels(spec)},
        "spec": {
            # Chosen by name only: never picked for someone else's sklearn model.
            "supportedModelFormats": [{"name": MODEL_FORMAT, "autoSelect": False}],
            "protocolVersions": ["v2", "grpc-v2"],
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
        },
    }


def inference_service(spec: DeploymentSpec, image: str) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in serving_environment(spec).items()]
    if spec.auth.enabled:
        env.append({"name": KEYS_ENV, "valueFrom": {"secretKeyRef": {"name": secret_name(spec), "key": SECRET_KEY}}})
    model = {
        "modelFormat": {"name": MODEL_FORMAT},
        "runtime": runtime_name(spec),
        "protocolVersion": "v2",
        "env": env,
        "resources": container_resources(spec),
        "readinessProbe": probe("/health/ready", spec.probes.readiness, port=CONTAINER_PORT),
        "livenessProbe": probe("/", spec.probes.liveness, port=CONTAINER_PORT),
    }
    predictor: dict[str, Any] = {
        "model": model,
        "terminationGracePeriodSeconds": spec.probes.termination_grace_period_seconds,
        "automountServiceAccountToken": False,
    }
    auto = spec.scale.autoscale
    if auto is None:
        predictor["minReplicas"] = predictor["maxReplicas"] = spec.scale.replicas
    else:
        predictor.update(
            minReplicas=auto.min_replicas,
            maxReplicas=auto.max_replicas,
            scaleMetric="cpu",
            scaleTarget=auto.target_utilization,
        )
    return {
        "apiVersion": API_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": spec.name, "labels": labels(spec)},
        "spec": {"predictor": predictor},
    }
