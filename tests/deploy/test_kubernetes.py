"""`diabetes deploy kubernetes`: complete manifests, validated offline in strict mode."""

from __future__ import annotations

import base64
import os
import shutil
import stat
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from diabetes_deploy.spec import NAME_RULE, load_spec
from tests.support.processes import DIABETES, REPO

K8S_VERSION = "1.30.0"  # a version AKS supports
SPEC = REPO / "service" / "deployment.yaml"
# The keys reach kubectl on its standard input, never on a command line (where `ps` shows them).
KEYS_COMMAND = (
    'printf %s "$DIABETES_API_KEYS" | kubectl create secret generic diabetes-service-keys '
    "--from-file=api-keys=/dev/stdin"
)


def deploy_kubernetes(out: Path, *args: str, keys: str | None = None, spec: Path = SPEC) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DIABETES_API_KEYS"}
    if keys is not None:
        env["DIABETES_API_KEYS"] = keys
    return subprocess.run(
        [DIABETES, "deploy", "kubernetes", "--spec", str(spec), "--out", str(out), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def load_dir(out: Path) -> dict[str, dict]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(out.glob("*.yaml"))}


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("k8s")
    proc = deploy_kubernetes(out, "--image", "diabetes-service:1")
    assert proc.returncode == 0, proc.stderr
    assert KEYS_COMMAND in proc.stderr
    return load_dir(out)


def test_every_manifest_is_valid_in_strict_mode(manifests: dict[str, dict]) -> None:
    kinds = {}
    for name, doc in manifests.items():
        if name == "kustomization.yaml":
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        kinds[doc["kind"]] = name
    assert set(kinds) == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}


def test_strict_validation_catches_a_mistake(manifests: dict[str, dict]) -> None:
    # The validator is not a rubber stamp: a misspelt field fails it.
    doc = yaml.safe_load(yaml.safe_dump(manifests["deployment.yaml"]))
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_the_files_beside_it(manifests: dict[str, dict]) -> None:
    kustomization = manifests["kustomization.yaml"]
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(set(manifests) - {"kustomization.yaml"})


def test_deployment_follows_the_spec(manifests: dict[str, dict]) -> None:
    spec = load_spec(SPEC)
    deployment = manifests["deployment.yaml"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "diabetes-service:1"
    assert container["resources"] == {
        "requests": {"cpu": "1", "memory": "1024Mi"},
        "limits": {"cpu": "2", "memory": "2048Mi"},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert container["readinessProbe"]["periodSeconds"] == spec.probes.readiness.period_seconds
    assert container["livenessProbe"]["httpGet"] == {"path": "/", "port": "http"}
    assert container["livenessProbe"]["failureThreshold"] == spec.probes.liveness.failure_threshold
    assert container["ports"] == [
        {"name": "http", "containerPort": 8080, "protocol": "TCP"},
        {"name": "grpc", "containerPort": spec.grpc_port, "protocol": "TCP"},  # Open Inference Protocol
        {"name": "metrics", "containerPort": 8082, "protocol": "TCP"},  # /metrics, with no key
    ]
    # Draining: the preStop sleep plus the in-flight requests fit in the grace period.
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(spec.probes.pre_stop_seconds)]
    grace = pod["terminationGracePeriodSeconds"]
    assert grace == spec.probes.termination_grace_period_seconds
    assert grace >= spec.probes.pre_stop_seconds + spec.scoring_timeout_seconds
    # Non-root, read-only root filesystem with a writable /tmp.
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert pod["volumes"][0]["name"] == "tmp"
    assert "emptyDir" in pod["volumes"][0]
    # Keys come from the Secret, by reference.
    keys = next(e for e in container["env"] if e["name"] == "DIABETES_API_KEYS")
    assert keys["valueFrom"]["secretKeyRef"] == {"name": "diabetes-service-keys", "key": "api-keys"}
    assert deployment["spec"]["selector"]["matchLabels"] == deployment["spec"]["template"]["metadata"]["labels"]


def test_service_hpa_pdb(manifests: dict[str, dict]) -> None:
    spec = load_spec(SPEC)
    labels = manifests["deployment.yaml"]["spec"]["selector"]["matchLabels"]
    service = manifests["service.yaml"]
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert service["spec"]["ports"][1] == {
        "name": "grpc",
        "port": 8081,
        "targetPort": "grpc",
        "protocol": "TCP",
        "appProtocol": "kubernetes.io/h2c",
    }
    hpa = manifests["hpa.yaml"]["spec"]
    assert spec.scale.autoscale is not None
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (
        spec.scale.autoscale.min_replicas,
        spec.scale.autoscale.max_replicas,
    )
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == spec.scale.autoscale.target_utilization
    assert hpa["scaleTargetRef"]["name"] == manifests["deployment.yaml"]["metadata"]["name"]
    pdb = manifests["pdb.yaml"]["spec"]
    assert pdb["selector"]["matchLabels"] == labels
    # The spec autoscales from 1: the one replica is protected (a drain waits for a second one).
    assert spec.scale.autoscale.min_replicas == 1
    assert pdb["minAvailable"] == 1
    assert "maxUnavailable" not in pdb
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # The autoscaler owns the count: a `replicas` would reset it on every `kubectl apply`.
    assert "replicas" not in manifests["deployment.yaml"]["spec"]


def test_the_image_defaults_to_the_tag_deploy_local_builds(tmp_path: Path) -> None:
    assert deploy_kubernetes(tmp_path).returncode == 0
    (container,) = load_dir(tmp_path)["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "diabetes-service:local"
    local_help = subprocess.run([DIABETES, "deploy", "local", "--help"], capture_output=True, text=True, timeout=30)
    assert "default: NAME:local" in local_help.stdout


def test_no_key_is_ever_written_into_the_folder(tmp_path: Path) -> None:
    out = tmp_path / "k8s"
    out.mkdir()
    (out / "secret.yaml").write_text("stringData: {api-keys: old-primary}\n")  # left by an earlier version
    proc = deploy_kubernetes(out, keys="k-primary,k-secondary")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "secret.yaml").exists()
    for path in out.rglob("*"):
        if path.is_file():
            assert "k-primary" not in path.read_text(), path
            assert "old-primary" not in path.read_text(), path
    assert "k-primary" not in proc.stdout + proc.stderr
    assert KEYS_COMMAND in proc.stderr
    assert "secret.yaml" not in load_dir(out)["kustomization.yaml"]["resources"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_the_printed_command_makes_the_secret_the_pods_read(tmp_path: Path) -> None:
    proc = deploy_kubernetes(tmp_path, keys="k-primary,k-secondary")
    command = next(line.strip() for line in proc.stderr.splitlines() if "kubectl create secret" in line)
    made = subprocess.run(
        ["sh", "-c", command + " --dry-run=client -o yaml"],
        env={**os.environ, "DIABETES_API_KEYS": "k-primary,k-secondary"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    secret = yaml.safe_load(made.stdout)
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded == {"api-keys": "k-primary,k-secondary"}  # the metrics port needs no scrape key
    # The names the Deployment reads.
    pod = load_dir(tmp_path)["deployment.yaml"]["spec"]["template"]["spec"]
    ref = next(e for e in pod["containers"][0]["env"] if e["name"] == "DIABETES_API_KEYS")["valueFrom"]["secretKeyRef"]
    assert (secret["metadata"]["name"], ref["key"]) == (ref["name"], "api-keys")
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)


def test_secret_out_writes_the_keys_to_a_private_file_outside_the_tree(tmp_path: Path) -> None:
    target = tmp_path / "private" / "diabetes-keys.yaml"
    proc = deploy_kubernetes(tmp_path / "k8s", "--secret-out", str(target), keys="k-primary,k-secondary")
    assert proc.returncode == 0, proc.stderr
    (secret,) = yaml.safe_load_all(target.read_text())
    assert secret["stringData"] == {"api-keys": "k-primary,k-secondary"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert f"kubectl apply -f {target}" in proc.stderr
    assert not (tmp_path / "k8s" / "secret.yaml").exists()


@pytest.mark.parametrize("where", ["inside --out", "inside the git working tree"])
def test_secret_out_refuses_a_path_that_would_be_committed(tmp_path: Path, where: str) -> None:
    out = tmp_path / "k8s"
    target = out / "keys.yaml" if where == "inside --out" else REPO / "build" / "keys-test.yaml"
    proc = deploy_kubernetes(out, "--secret-out", str(target), keys="k-primary,k-secondary")
    assert proc.returncode == 1
    assert where in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert not target.exists()
    assert not out.exists()  # refused before anything is written


def test_fixed_replicas_and_no_auth(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = deploy_kubernetes(out)
    assert first.returncode == 0
    assert (out / "hpa.yaml").exists()
    spec = tmp_path / "fixed.yaml"
    spec.write_text(
        "name: fixed-service\nmodel: {name: diabetes_model, version: 3}\nscale: {replicas: 2}\nauth: {enabled: false}\n"
    )
    proc = deploy_kubernetes(out, spec=spec)
    assert proc.returncode == 0, proc.stderr
    docs = load_dir(out)
    # The stale HPA of the previous spec is gone; no Secret to create with auth off.
    assert set(docs) == {"deployment.yaml", "service.yaml", "pdb.yaml", "kustomization.yaml"}
    assert "kubectl create secret" not in proc.stderr
    assert docs["deployment.yaml"]["spec"]["replicas"] == 2
    assert docs["pdb.yaml"]["spec"]["minAvailable"] == 1
    env = docs["deployment.yaml"]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert all(e["name"] != "DIABETES_API_KEYS" for e in env)
    for name, doc in docs.items():
        if name != "kustomization.yaml":
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_the_pods_environment_applies_every_serving_setting_of_the_spec(tmp_path: Path) -> None:
    spec = tmp_path / "tuned.yaml"
    spec.write_text(
        "name: tuned-service\nmodel: {name: diabetes_model, version: 3}\n"
        "resources: {cpu_cores: 0.5, memory_gb: 1, limits: {cpu_cores: 3, memory_gb: 2}}\n"
        "scoring_timeout_seconds: 12.5\nmax_concurrent_requests: 21\ngrpc_port: 9001\n"
        "probes: {pre_stop_seconds: 4, termination_grace_period_seconds: 30}\n"
    )
    proc = deploy_kubernetes(tmp_path / "out", spec=spec, keys="a-key,b-key")
    assert proc.returncode == 0, proc.stderr
    written = load_dir(tmp_path / "out")
    pod = written["deployment.yaml"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["ports"][1]["containerPort"] == 9001
    assert written["service.yaml"]["spec"]["ports"][1]["port"] == 9001
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env == {
        "DIABETES_SERVICE_NAME": "tuned-service",
        "DIABETES_SCORING_TIMEOUT_SECONDS": "12.5",
        "DIABETES_MAX_CONCURRENT_REQUESTS": "21",
        "DIABETES_WORKERS": "3",
        "DIABETES_GRACEFUL_TIMEOUT_SECONDS": "26",
        "DIABETES_GRPC_PORT": "9001",
        "DIABETES_API_KEYS": None,  # from the Secret, by reference
    }
    assert pod["terminationGracePeriodSeconds"] == 30
    # What the pod's environment says is what the service then runs with.
    from diabetes_service.settings import ServiceSettings

    settings = ServiceSettings(**{k.removeprefix("DIABETES_").lower(): v for k, v in env.items() if v is not None})
    assert (settings.scoring_timeout_seconds, settings.max_concurrent_requests, settings.workers) == (12.5, 21, 3)
    assert settings.grpc_port == 9001


def test_the_specs_version_mismatch_allowance_reaches_the_pod(tmp_path: Path) -> None:
    """A model saved with another major scikit-learn: the spec's `model.allow_version_mismatch`
    is the pod's (and the Docker container's) DIABETES_ALLOW_VERSION_MISMATCH, which the service reads."""
    from diabetes_service.settings import ServiceSettings

    spec = tmp_path / "mismatch.yaml"
    spec.write_text("name: old-model\nmodel: {name: diabetes_model, version: 3, allow_version_mismatch: true}\n")
    proc = deploy_kubernetes(tmp_path / "out", spec=spec, keys="a-key")
    assert proc.returncode == 0, proc.stderr
    pod = load_dir(tmp_path / "out")["deployment.yaml"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["DIABETES_ALLOW_VERSION_MISMATCH"] == "True"
    assert ServiceSettings(allow_version_mismatch=env["DIABETES_ALLOW_VERSION_MISMATCH"]).allow_version_mismatch


def test_a_following_pod_serves_the_registrys_alias_with_credentials_from_a_secret(tmp_path: Path) -> None:
    spec = tmp_path / "follow.yaml"
    spec.write_text(
        "name: follow-service\n"
        "model: {name: diabetes_model, alias: champion, follow: true, tracking_uri: 'https://mlflow.example.test'}\n"
        "auth: {enabled: false}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DIABETES_API_KEYS"}
    done = subprocess.run(
        [DIABETES, "deploy", "kubernetes", "--spec", str(spec), "--out", str(tmp_path / "out")],
        env={**env, "MLFLOW_TRACKING_TOKEN": "registry-token-for-test"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    docs = load_dir(tmp_path / "out")
    (container,) = docs["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert container["args"] == [
        *("/opt/venv/bin/diabetes", "serve", "--model-uri", "models:/diabetes_model@champion"),
        *("--host", "0.0.0.0", "--port", "8080", "--follow"),
    ]
    env_values = {e["name"]: e.get("value") for e in container["env"]}
    assert env_values["DIABETES_TRACKING_URI"] == "https://mlflow.example.test"
    assert env_values["DIABETES_FOLLOW"] == "True"
    assert container["envFrom"] == [{"secretRef": {"name": "follow-service-registry", "optional": True}}]
    # The registry's credentials are in no manifest: the Secret is made apart, from a file of them.
    for path in (tmp_path / "out").rglob("*.yaml"):
        assert "registry-token-for-test" not in path.read_text()
    assert "registry-secret.yaml" not in docs
    assert "kubectl create secret generic follow-service-registry --from-env-file=registry.env" in done.stderr
    assert "registry-token-for-test" not in done.stderr
    for name, doc in docs.items():
        if name != "kustomization.yaml":
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_following_without_a_tracking_server_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "follow.yaml"
    spec.write_text("name: follow-service\nmodel: {name: diabetes_model, alias: champion, follow: true}\n")
    done = deploy_kubernetes(tmp_path / "out", spec=spec)
    assert done.returncode != 0
    assert "model.follow in a pod needs model.tracking_uri" in done.stderr
    assert not (tmp_path / "out").exists()


def test_bad_spec_writes_nothing(tmp_path: Path) -> None:
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: Bad_Name\nmodel: {name: m, version: 1}\n")
    out = tmp_path / "out"
    proc = deploy_kubernetes(out, spec=spec)
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"diabetes deploy: {spec}: name: {NAME_RULE}"
    assert not out.exists()


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_it(tmp_path: Path) -> None:
    assert deploy_kubernetes(tmp_path, keys="a,b").returncode == 0
    proc = subprocess.run(
        ["kubectl", "kustomize", str(tmp_path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    kinds = sorted(doc["kind"] for doc in yaml.safe_load_all(proc.stdout))
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
