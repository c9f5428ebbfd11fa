"""The nightly drift job in the Kubernetes manifests: a CronJob running `diabetes monitor` (issue 24).

The pods write the payload log to a volume (a ReadWriteMany PersistentVolumeClaim the spec's
`monitor.claim` names, mounted at `monitor.dir`); the job mounts the same claim, reads the last
`window_hours` of it and writes DIR/_reports/<date>.html and .json beside it (the log's reader skips
`_` folders). The job runs the serving image: the model baked in at /opt/model carries its reference
profile and, in DIABETES_MODEL_NAME/VERSION, the name and version its records are logged under; a
following pod's job asks the registry for the alias's version instead. With `fail_on_drift` the Job
fails on drift (exit 3, no retry), which `kube_job_status_failed` turns into an alert.
"""

from __future__ import annotations

import posixpath
from typing import Any

from diabetes_deploy.spec import DeploymentSpec

VOLUME = "payloads"
WORKDIR = "/tmp"  # noqa: S108 - the image's WORKDIR (docker/Dockerfile), where a relative dir lands


def payload_mount(spec: DeploymentSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the volume, its mount) the pods write the payload log to: the `monitor:` claim, which the job
    mounts too; without a `monitor:` section, an emptyDir (the root filesystem is read-only), whose
    records live as long as the pod. A relative payload_logging.dir is under the image's WORKDIR, /tmp."""
    if spec.monitor is not None:
        volume = {"name": VOLUME, "persistentVolumeClaim": {"claimName": spec.monitor.claim}}
        return volume, {"name": VOLUME, "mountPath": spec.monitor.dir}
    assert spec.payload_logging is not None
    return {"name": VOLUME, "emptyDir": {}}, {
        "name": VOLUME,
        "mountPath": posixpath.join(WORKDIR, spec.payload_logging.dir),
    }


def command(spec: DeploymentSpec) -> str:
    """The job's shell line: the window ends now and starts `window_hours` earlier (UTC)."""
    assert spec.monitor is not None
    job = spec.monitor
    model = spec.model_uri if spec.model.follow else "/opt/model"
    reports = f"{job.dir}/_reports"
    parts = [
        'now="$(date -u +%Y-%m-%dT%H:%M:%SZ)"',
        f'since="$(date -u -d "{job.window_hours} hours ago" +%Y-%m-%dT%H:%M:%SZ)"',
        f'stamp="$(date -u +%Y-%m-%dT%H%MZ)"; mkdir -p "{reports}"',
        f'exec /opt/venv/bin/diabetes monitor --payloads "{job.dir}" --model-uri "{model}"'
        f' --since "$since" --until "$now" --out "{reports}/$stamp.html" --json "{reports}/$stamp.json"'
        + (" --fail-on-drift" if job.fail_on_drift else ""),
    ]
    return "; ".join(parts)


def cron_job(spec: DeploymentSpec, image: str, container_security: dict[str, Any], env: list[dict]) -> dict[str, Any]:
    """The CronJob manifest; `env`: the registry's variables for a following pod's job."""
    assert spec.monitor is not None
    volume, mount = payload_mount(spec)
    container: dict[str, Any] = {
        "name": "drift",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/bin/sh", "-c", command(spec)],
        "env": [{"name": "MLFLOW_LOGGING_LEVEL", "value": "WARNING"}, *env],
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}},
        "securityContext": container_security,
        "volumeMounts": [mount, {"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108 - an emptyDir
    }
    name = f"{spec.name}-drift"
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {
            "name": name,
            "labels": {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "diabetes-scoring"},
        },
        "spec": {
            "schedule": spec.monitor.schedule,
            "timeZone": spec.monitor.time_zone,
            "concurrencyPolicy": "Forbid",
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 7,
            "jobTemplate": {
                "spec": {
                    "backoffLimit": 0,  # drift is an answer, not a failure to retry
                    "template": {
                        "spec": {
                            "restartPolicy": "Never",
                            "automountServiceAccountToken": False,
                            "securityContext": {
                                "runAsNonRoot": True,
                                "fsGroup": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"},
                            },
                            "containers": [container],
                            "volumes": [volume, {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}],
                        }
                    },
                }
            },
        },
    }
