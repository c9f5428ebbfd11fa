"""The nightly drift job in `diabetes deploy kubernetes`'s manifests (the spec's `monitor:` section):
a CronJob running `diabetes monitor` on the very volume the pods mount for the payload log, valid in
strict mode; its shell line run here for real, on a payload log, with `diabetes` in place of the
image's /opt/venv/bin/diabetes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import kubernetes_validate
import numpy as np
import yaml

from diabetes_monitor.profile import PROFILE_FILE, build_profile, save
from loadtests.bench.monitor import hourly_times, write_log
from tests.deploy.test_kubernetes import K8S_VERSION, SPEC, deploy_kubernetes, load_dir
from tests.support.processes import BIN, REPO

MONITOR = "monitor:\n  claim: diabetes-payloads\n  dir: /var/log/diabetes/payloads\n  window_hours: 6\n"


def _manifests(tmp_path: Path, extra: str = MONITOR, *args: str) -> dict[str, dict]:
    spec = tmp_path / "deployment.yaml"
    spec.write_text(SPEC.read_text() + extra)
    out = tmp_path / "k8s"
    done = deploy_kubernetes(out, "--image", "diabetes-service:1", *args, spec=spec)
    assert done.returncode == 0, done.stderr
    return load_dir(out)


def test_no_monitor_section_no_job(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path, "")
    assert "drift-cronjob.yaml" not in manifests
    assert all(v["name"] == "tmp" for v in manifests["deployment.yaml"]["spec"]["template"]["spec"]["volumes"])


def test_the_job_reads_the_volume_the_pods_log_to(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path)
    job = manifests["drift-cronjob.yaml"]
    kubernetes_validate.validate(job, K8S_VERSION, strict=True)
    kubernetes_validate.validate(manifests["deployment.yaml"], K8S_VERSION, strict=True)
    assert "drift-cronjob.yaml" in manifests["kustomization.yaml"]["resources"]
    assert job["spec"]["schedule"] == "30 2 * * *"
    assert job["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    serving = manifests["deployment.yaml"]["spec"]["template"]["spec"]
    claim = {"name": "payloads", "persistentVolumeClaim": {"claimName": "diabetes-payloads"}}
    assert claim in pod["volumes"]
    assert claim in serving["volumes"]
    mount = {"name": "payloads", "mountPath": "/var/log/diabetes/payloads"}
    assert mount in pod["containers"][0]["volumeMounts"]
    assert mount in serving["containers"][0]["volumeMounts"]
    line = pod["containers"][0]["command"][2]
    assert '--model-uri "/opt/model"' in line
    assert line.endswith("--fail-on-drift")


def test_bad_monitor_sections_are_refused_naming_the_field(tmp_path: Path) -> None:
    spec = tmp_path / "deployment.yaml"
    spec.write_text(SPEC.read_text() + "monitor:\n  claim: Not_A_Name\n")
    done = deploy_kubernetes(tmp_path / "k8s", "--image", "x:1", spec=spec)
    assert done.returncode != 0
    assert "monitor.claim" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_drift_job_on_another_folder_than_the_payload_log_is_refused(tmp_path: Path) -> None:
    spec = tmp_path / "deployment.yaml"
    spec.write_text(SPEC.read_text() + MONITOR + "payload_logging:\n  dir: /var/log/elsewhere\n")
    done = deploy_kubernetes(tmp_path / "k8s", "--image", "x:1", spec=spec)
    assert done.returncode != 0
    assert "monitor.dir" in done.stderr
    assert "payload_logging.dir" in done.stderr
    assert not (tmp_path / "k8s").exists()


def test_the_jobs_shell_line_reports_the_last_hours_and_fails_on_drift(tmp_path: Path) -> None:
    """The rendered line, run by /bin/sh with the payload folder and the image's model in tmp_path."""
    line = _manifests(tmp_path)["drift-cronjob.yaml"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    line = line["containers"][0]["command"][2]
    payloads, model = tmp_path / "payloads", tmp_path / "model"
    rng = np.random.default_rng(3)
    train = {"bmi": rng.normal(0, 1, 2_000)}
    save(build_profile(train, {"prediction": train["bmi"]}), model / PROFILE_FILE)
    import datetime as dt

    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    for start, shift in ((now - dt.timedelta(hours=30), 0.0), (now - dt.timedelta(hours=3), 2.0)):
        rows = rng.normal(shift, 1, 1_000)
        write_log(payloads, "diabetes_model", "7", {"bmi": rows}, {"prediction": rows}, hourly_times(1_000, 2, start))
    line = line.replace("/var/log/diabetes/payloads", str(payloads)).replace("/opt/model", str(model))
    line = line.replace("/opt/venv/bin/diabetes", str(BIN / "diabetes"))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "DIABETES_MODEL_NAME": "diabetes_model",
        "DIABETES_MODEL_VERSION": "7",
    }
    done = subprocess.run(["/bin/sh", "-c", line], env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 3, done.stderr  # the last 6 hours hold the shifted rows only
    assert "1000 rows of diabetes_model version 7: drift in bmi" in done.stdout
    reports = sorted((payloads / "_reports").iterdir())
    assert [p.suffix for p in reports] == [".html", ".json"]
    assert yaml.safe_load(reports[1].read_text())["rows"] == 1_000


def test_payload_logging_without_a_monitor_section_writes_to_an_empty_dir(tmp_path: Path) -> None:
    # The root filesystem is read-only: without a claim, the pods still need a writable payload folder.
    manifests = _manifests(tmp_path, "payload_logging:\n  dir: /var/log/diabetes/payloads\n")
    deployment = manifests["deployment.yaml"]
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    assert "drift-cronjob.yaml" not in manifests
    serving = deployment["spec"]["template"]["spec"]
    assert {"name": "payloads", "emptyDir": {}} in serving["volumes"]
    mount = {"name": "payloads", "mountPath": "/var/log/diabetes/payloads"}
    assert mount in serving["containers"][0]["volumeMounts"]
    env = {e["name"]: e.get("value") for e in serving["containers"][0]["env"]}
    assert env["DIABETES_LOG_PAYLOADS"] == "/var/log/diabetes/payloads"


def test_a_relative_payload_folder_is_mounted_under_the_images_workdir(tmp_path: Path) -> None:
    manifests = _manifests(tmp_path, "payload_logging:\n  dir: payloads\n")
    deployment = manifests["deployment.yaml"]
    kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)
    mounts = deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "payloads", "mountPath": "/tmp/payloads"} in mounts
