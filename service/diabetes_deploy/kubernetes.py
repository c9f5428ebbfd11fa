"""`diabetes deploy kubernetes --out DIR`: complete manifests for AKS (or any cluster) from the spec.

Deployment (resources, probes on the service's routes, preStop + grace period to drain, non-root,
read-only root filesystem with an emptyDir at /tmp; no `replicas` when an autoscaler owns them, or
every re-apply would reset the scale), Service, HorizontalPodAutoscaler (when the spec autoscales),
PodDisruptionBudget and a kustomization.yaml listing them. With `model.follow` the pod serves the
registry's alias (`model.tracking_uri`) and follows it, with the registry's credentials in a Secret
of their own (optional).

No manifest holds a key or a credential (the real keys once landed in `k8s/secret.yaml`, ready for
`git add .`): the pods reference the Secrets by name, and `secret_commands` says how to create them
from the environment; `write_secrets` writes them instead to a file the user names, refused inside
DIR or inside a git working tree.
DIR/monitoring/ holds the PodMonitor (scraping the pods' metrics port, with no key), PrometheusRule
and dashboard ConfigMap (monitoring.py), with their own kustomization: they need the Prometheus
operator's CRDs, which not every cluster has. With the spec's `monitor:` section, the pods mount the
payload log's volume and drift-cronjob.yaml runs `diabetes monitor` on it nightly (drift_job.py);
with `payload_logging:` alone, the pods write it to an emptyDir (records live as long as the pod).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from diabetes_deploy import monitoring
from diabetes_deploy.errors import DeployError
from diabetes_deploy.spec import DeploymentSpec, Probe, serving_environment

CONTAINER_PORT = 8080
# /metrics, with no key (`--metrics-port`'s default): pods only, never on the Service (monitoring.py).
METRICS_PORT = 8082
RUN_AS = 10001  # the image's `scoring` user
KEYS_ENV = "DIABETES_API_KEYS"
SECRET_KEY = "api-keys"  # noqa: S105 - the key name inside the Secret, not a key
REGISTRY_CREDENTIALS = ("MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def cpu_quantity(cores: float) -> str:
    millis = round(cores * 1000)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


def memory_quantity(gb: float) -> str:
    return f"{round(gb * 1024)}Mi"


def labels(spec: DeploymentSpec) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/part-of": "diabetes-scoring"}


def secret_name(spec: DeploymentSpec) -> str:
    return f"{spec.name}-keys"


def probe(path: str, timing: Probe, port: int | str = "http") -> dict[str, Any]:
    # HTTP probes for both transports: one process answers both, and its readiness is theirs.
    return {
        "httpGet": {"path": path, "port": port},
        "initialDelaySeconds": timing.initial_delay_seconds,
        "periodSeconds": timing.period_seconds,
        "timeoutSeconds": timing.timeout_seconds,
        "failureThreshold": timing.failure_threshold,
        "successThreshold": timing.success_threshold,
    }


def container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "capabilities": {"drop": ["ALL"]},
    }


def container_ports(spec: DeploymentSpec) -> list[dict[str, Any]]:
    ports: list[dict[str, Any]] = [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}]
    if spec.grpc_port:
        ports.append({"name": "grpc", "containerPort": spec.grpc_port, "protocol": "TCP"})
    ports.append({"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"})
    return ports


def container_resources(spec: DeploymentSpec) -> dict[str, Any]:
    """The spec's requests and limits as a container's `resources` (Deployment and KServe predictor)."""
    return {
        "requests": {
            "cpu": cpu_quantity(spec.resources.cpu_cores),
            "memory": memory_quantity(spec.resources.memory_gb),
        },
        "limits": {
            "cpu": cpu_quantity(spec.resources.cpu_limit),
            "memory": memory_quantity(spec.resources.memory_limit_gb),
        },
    }


def deployment(spec: DeploymentSpec, image: str) -> dict[str, Any]:
    resources = container_resources(spec)
    env: list[dict[str, Any]] = [{"name": name, "value": value} for name, value in serving_environment(spec).items()]
    if spec.auth.enabled:
        env.append({"name": KEYS_ENV, "valueFrom": {"secretKeyRef": {"name": secret_name(spec), "key": SECRET_KEY}}})
    container: dict[str, Any] = {
        "name": "scoring",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": container_ports(spec),
        "env": env,
        "resources": resources,
        "readinessProbe": probe("/health/ready", spec.probes.readiness),
        "livenessProbe": probe("/", spec.probes.liveness),
        # Endpoints drop the pod while it sleeps; SIGTERM then drains what is still in flight.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(spec.probes.pre_stop_seconds)]}}},
        "securityContext": container_security(),
        # Byte-code (PYTHONPYCACHEPREFIX) and the workers' metrics snapshots go to /tmp.
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
    if spec.model.follow:
        # The pod serves the registry's alias instead of the model baked into the image, and
        # follows it; the registry's credentials (if any) come from their own Secret.
        container["args"] = [
            *("/opt/venv/bin/diabetes", "serve", "--model-uri", spec.model_uri),
            *("--host", "0.0.0.0", "--port", str(CONTAINER_PORT), "--follow"),
        ]
        container["envFrom"] = [{"secretRef": {"name": registry_secret_name(spec), "optional": True}}]
    # With an autoscaler the count is its own: a `replicas` here would reset it on every apply.
    replicas = {} if spec.scale.autoscale is not None else {"replicas": spec.scale.min_replicas}
    manifest: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "labels": labels(spec)},
        "spec": {
            **replicas,
            "selector": {"matchLabels": labels(spec)},
            # Never below the wanted count during a rollout: a new pod must be ready first.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": labels(spec),
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(METRICS_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    "terminationGracePeriodSeconds": spec.probes.termination_grace_period_seconds,
                    "automountServiceAccountToken": False,
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS,
                        "runAsGroup": RUN_AS,
                        "fsGroup": RUN_AS,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                },
            },
        },
    }
    if spec.monitor is not None or spec.payload_logging is not None:  # the payload log's volume (drift_job.py)
        from diabetes_deploy.drift_job import payload_mount

        volume, mount = payload_mount(spec)
        container["volumeMounts"].append(mount)
        manifest["spec"]["template"]["spec"]["volumes"].append(volume)
    return manifest


def service(spec: DeploymentSpec, service_type: str = "ClusterIP") -> dict[str, Any]:
    ports: list[dict[str, Any]] = [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    if spec.grpc_port:
        # h2c: gRPC without TLS, so that meshes and gateways route it as HTTP/2 from the start.
        ports.append(
            {
                "name": "grpc",
                "port": spec.grpc_port,
                "targetPort": "grpc",
                "protocol": "TCP",
                "appProtocol": "kubernetes.io/h2c",
            }
        )
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": spec.name, "labels": labels(spec)},
        "spec": {
            "type": service_type,
            "selector": labels(spec),
            "ports": ports,
        },
    }


def autoscaler(spec: DeploymentSpec) -> dict[str, Any] | None:
    auto = spec.scale.autoscale
    if auto is None:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": spec.name, "labels": labels(spec)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": auto.min_replicas,
            "maxReplicas": auto.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": auto.target_utilization},
                    },
                }
            ],
        },
    }


def min_available(spec: DeploymentSpec) -> int:
    """Pods a voluntary disruption (a node drain) must leave running: one replica is protected too.

    `maxUnavailable: 1` on one replica let a drain take the only pod down (issue 22). With a budget of
    at least one, a drain of a single replica waits until a second is up (`kubectl scale`, or the
    autoscaler); from three replicas up, one may go at a time.
    """
    return max(1, spec.scale.min_replicas - 1)


def disruption_budget(spec: DeploymentSpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": spec.name, "labels": labels(spec)},
        "spec": {
            "minAvailable": min_available(spec),
            # A pod that is not ready protects no traffic: it never holds a drain up.
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
            "selector": {"matchLabels": labels(spec)},
        },
    }


def keys_secret(spec: DeploymentSpec, keys: str) -> dict[str, Any]:
    """The keys Secret, for `write_secrets` only: never part of the manifests folder."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": secret_name(spec),
            "labels": labels(spec),
            "annotations": {"diabetes-scoring/keys": "from DIABETES_API_KEYS"},
        },
        "type": "Opaque",
        "stringData": {SECRET_KEY: keys},
    }


def registry_secret_name(spec: DeploymentSpec) -> str:
    return f"{spec.name}-registry"


def registry_credentials() -> dict[str, str]:
    """MLflow's own credential variables set in this environment."""
    return {name: os.environ[name] for name in REGISTRY_CREDENTIALS if os.environ.get(name)}


def registry_secret(spec: DeploymentSpec, values: dict[str, str]) -> dict[str, Any]:
    """MLflow's credentials for a following pod, for `write_secrets` only (the pod's envFrom is optional)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": registry_secret_name(spec),
            "labels": labels(spec),
            "annotations": {"diabetes-scoring/registry": "from MLflow's credential variables"},
        },
        "type": "Opaque",
        "stringData": values,
    }


def secret_commands(spec: DeploymentSpec) -> list[str]:
    """How to create the Secrets the manifests name: no manifest holds a key or a credential, so
    these read them from this shell's environment (never on a command line)."""
    commands = []
    if spec.auth.enabled:
        commands.append(
            f'printf %s "${KEYS_ENV}" | kubectl create secret generic {secret_name(spec)} '
            f"--from-file={SECRET_KEY}=/dev/stdin"
        )
    if spec.model.follow:
        commands.append(
            f"kubectl create secret generic {registry_secret_name(spec)} --from-env-file=registry.env"
            f"  # {' / '.join(REGISTRY_CREDENTIALS)}=..., only if the server needs them"
        )
    return commands


def _inside_git_tree(path: Path) -> Path | None:
    for folder in path.parents:
        if (folder / ".git").exists():
            return folder
    return None


def write_secrets(spec: DeploymentSpec, path: Path, out: Path, keys: str | None) -> Path:
    """The Secrets (keys, and the registry's for a following pod) as one file at `path`, private to
    its owner; refused inside the manifests folder or a git working tree, where it would be committed."""
    import yaml

    target = path.expanduser().resolve()
    if target.is_relative_to(out.expanduser().resolve()):
        raise DeployError(f"--secret-out {path}: inside --out {out}, beside the manifests: name a path outside it")
    tree = _inside_git_tree(target)
    if tree is not None:
        raise DeployError(f"--secret-out {path}: inside the git working tree {tree}: name a path outside it")
    docs = []
    if spec.auth.enabled:
        if not keys:
            raise DeployError(f"--secret-out needs the keys: set {KEYS_ENV}='primary,secondary'")
        docs.append(keys_secret(spec, keys))
    if spec.model.follow and registry_credentials():
        docs.append(registry_secret(spec, registry_credentials()))
    if not docs:
        raise DeployError("--secret-out: this spec needs no Secret (auth is off and nothing to follow)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(HEADER + yaml.safe_dump_all(docs, sort_keys=False))
        tmp.replace(target)
    except OSError as exc:
        raise DeployError(f"cannot write {path}: {exc.strerror or exc}") from None
    return target


def manifests(
    spec: DeploymentSpec, image: str, *, service_type: str = "ClusterIP", kserve: bool = False
) -> dict[str, dict[str, Any]]:
    """File name -> manifest, in the order kustomize lists them; `kserve`: an InferenceService
    (KServe makes the Deployment, Service and autoscaler) instead of our own. The Secrets they name
    are created apart (`secret_commands`, `write_secrets`): no manifest holds a key or a credential."""
    if spec.model.follow and not spec.model.tracking_uri:
        raise DeployError("model.follow in a pod needs model.tracking_uri: the MLflow tracking server to follow")
    files: dict[str, dict[str, Any] | None] = {}
    if kserve:
        if spec.model.follow:
            raise DeployError("--kserve serves the model baked into the image: model.follow is not supported there")
        from diabetes_deploy.kserve import inference_service, serving_runtime

        files["servingruntime.yaml"] = serving_runtime(spec, image)
        files["inferenceservice.yaml"] = inference_service(spec, image)
    else:
        files.update(
            {
                "deployment.yaml": deployment(spec, image),
                "service.yaml": service(spec, service_type),
                "hpa.yaml": autoscaler(spec),
                "pdb.yaml": disruption_budget(spec),
            }
        )
    if spec.monitor is not None:
        from diabetes_deploy.drift_job import cron_job

        if kserve:
            raise DeployError("monitor: the nightly drift job reads the pods' volume: not with --kserve")
        registry: list[dict[str, Any]] = []
        if spec.model.follow:  # the job asks the registry which version the alias names, as the pods do
            registry = [{"name": "DIABETES_TRACKING_URI", "value": spec.model.tracking_uri}]
        job = cron_job(spec, image, container_security(), registry)
        if spec.model.follow:
            job_container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
            job_container["envFrom"] = [{"secretRef": {"name": registry_secret_name(spec), "optional": True}}]
        files["drift-cronjob.yaml"] = job
    present = {name: doc for name, doc in files.items() if doc is not None}
    kustomization: dict[str, Any] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(present),
    }
    return {**present, "kustomization.yaml": kustomization}


HEADER = "# Generated by `diabetes deploy kubernetes` from the deployment spec: edit the spec, not this file.\n"


def write(
    spec: DeploymentSpec,
    out: Path,
    image: str,
    *,
    service_type: str = "ClusterIP",
    kserve: bool = False,
) -> list[Path]:
    """Write the manifests into `out`; everything is rendered before the first file is written.

    A `secret.yaml` or `registry-secret.yaml` an earlier version left in `out` is removed."""
    import yaml

    rendered = {}
    for name, doc in manifests(spec, image, service_type=service_type, kserve=kserve).items():
        rendered[name] = HEADER + yaml.safe_dump(doc, sort_keys=False)
    # KServe makes the pods itself, without our metrics port: the PodMonitor is for our own Deployment's.
    for name, doc in {} if kserve else monitoring.kubernetes_manifests(spec, labels(spec)).items():
        rendered[f"monitoring/{name}"] = HEADER + yaml.safe_dump(doc, sort_keys=False)
    try:
        (out / "monitoring").mkdir(parents=True, exist_ok=True)
        written = []
        for name, text in rendered.items():
            path = out / name
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            tmp.replace(path)
            written.append(path)
    except OSError as exc:
        raise DeployError(f"cannot write the manifests into {out}: {exc.strerror or exc}") from None
    # A spec changed from autoscale to fixed replicas must not leave a stale HPA behind, nor an
    # earlier version's Secrets their keys.
    stale_names = ("hpa.yaml", "secret.yaml", "registry-secret.yaml", "inferenceservice.yaml")
    stale_names += ("servingruntime.yaml", "deployment.yaml", "monitoring/servicemonitor.yaml")  # before PodMonitor
    for stale in (*stale_names, "service.yaml", "pdb.yaml"):
        if stale not in rendered and (out / stale).exists():
            (out / stale).unlink()
    return written
