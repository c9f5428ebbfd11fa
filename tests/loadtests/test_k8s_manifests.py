"""The Locust master and worker manifests for AKS: valid in strict mode, and their files complete."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.support.processes import REPO

K8S_VERSION = "1.30.0"  # a version AKS supports, as for the deployment manifests
K8S_DIR = REPO / "loadtests" / "k8s"
PACKAGE = REPO / "loadtests" / "diabetes_loadtest"


def _docs() -> dict[str, dict]:
    docs = {}
    for path in sorted(K8S_DIR.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            docs[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return docs


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict]:
    return _docs()


def _pod(manifests: dict[str, dict], job: str) -> dict:
    return manifests[f"Job/{job}"]["spec"]["template"]["spec"]


def test_every_manifest_is_valid_in_strict_mode(manifests):
    for doc in manifests.values():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert set(manifests) == {
        "ConfigMap/diabetes-locust-settings",
        "Service/diabetes-locust-master",
        "Job/diabetes-locust-master",
        "Job/diabetes-locust-worker",
    }


def test_strict_validation_catches_a_mistake(manifests):
    doc = yaml.safe_load(yaml.safe_dump(manifests["Job/diabetes-locust-worker"]))
    doc["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["configMapRefs"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_master_and_workers_are_wired_to_each_other_and_to_the_settings(manifests):
    settings = manifests["ConfigMap/diabetes-locust-settings"]["data"]
    service = manifests["Service/diabetes-locust-master"]
    master, worker = _pod(manifests, "diabetes-locust-master"), _pod(manifests, "diabetes-locust-worker")
    master_args, worker_args = master["containers"][0]["args"], worker["containers"][0]["args"]
    assert "--master" in master_args
    assert "--expect-workers=2" in master_args
    assert manifests["Job/diabetes-locust-worker"]["spec"]["parallelism"] == 2
    assert f"--master-host={service['metadata']['name']}" in worker_args
    workers_port = next(p for p in service["spec"]["ports"] if p["name"] == "workers")
    assert f"--master-port={workers_port['port']}" in worker_args
    assert (
        service["spec"]["selector"].items()
        <= manifests["Job/diabetes-locust-master"]["spec"]["template"]["metadata"]["labels"].items()
    )
    # Every $(VAR) in the master's arguments comes from the settings ConfigMap.
    used = set(re.findall(r"\$\((\w+)\)", " ".join(master_args)))
    assert used
    assert used <= set(settings)
    # Locust reads LOCUST_* variables itself; a worker given a run time would refuse to start.
    assert not any(name.startswith("LOCUST_") for name in settings)
    for pod in (master, worker):
        assert pod["restartPolicy"] in ("Never", "OnFailure")
        env = pod["containers"][0]["env"]
        # The key comes from the deployment's Secret, never from a manifest.
        assert [e["valueFrom"]["secretKeyRef"] for e in env] == [{"name": "diabetes-service-keys", "key": "api-keys"}]


def _mount(pod: dict, root: Path) -> Path:
    """Lay out the locustfile ConfigMap as the pod sees it, made from the repository's files."""
    volume = next(v for v in pod["volumes"] if v["name"] == "locustfile")
    sources = {path.name: path for path in [REPO / "loadtests" / "locustfile.py", *PACKAGE.iterdir()]}
    for item in volume["configMap"]["items"]:
        target = root / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(sources[item["key"]], target)
    return root / "locustfile.py"


def test_the_mounted_files_are_the_whole_package(manifests):
    for job in ("diabetes-locust-master", "diabetes-locust-worker"):
        items = _pod(manifests, job)["volumes"][1]["configMap"]["items"]
        shipped = {f"diabetes_loadtest/{p.name}" for p in PACKAGE.iterdir() if p.suffix in (".py", ".json")}
        assert {item["path"] for item in items} == {"locustfile.py", *shipped}


def test_the_locustfile_runs_from_the_mount_with_only_locust_installed(manifests, tmp_path):
    locustfile = _mount(_pod(manifests, "diabetes-locust-worker"), tmp_path / "mnt" / "locust")
    # Hide the project's own install: everything must come from the mount (as in the Locust image).
    script = f"""
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", str(f))]
sys.path.insert(0, {str(locustfile.parent)!r})
import locustfile
loaded = {{n: m.__file__ for n, m in sys.modules.items() if n.startswith("diabetes_")}}
assert set(loaded) >= {{"diabetes_loadtest.users", "diabetes_loadtest.probe", "diabetes_loadtest.workers"}}, loaded
assert all(f.startswith({str(locustfile.parent)!r}) for f in loaded.values()), loaded
heavy = [m for m in ("yaml", "sklearn", "numpy", "pydantic", "diabetes_client") if m in sys.modules]
assert not heavy, heavy
print(sorted(c.__name__ for c in (locustfile.PredictUser, locustfile.PredictProbaUser)))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIABETES_")}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['PredictProbaUser', 'PredictUser']"
