"""A real container: `diabetes deploy local` builds the image, runs it and it serves the example.

Needs the private engine that `.ci/run` starts (scripts/docker-session.sh); DOCKER_HOST points at
its socket. Under CI a missing engine fails; on a developer machine these tests skip.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.support.processes import DIABETES, free_port

pytestmark = [pytest.mark.docker, pytest.mark.slow]

DEFAULT_SOCKET = "unix:///var/tmp/diabetes-docker/docker.sock"
STANDIN = "diabetes-standin/python:3.11-slim"
NAME = "diabetes-ci-check"
KEYS = "ci-primary-key,ci-secondary-key"
MAX_IMAGE_BYTES = 350 * 1000 * 1000


def docker_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DOCKER_HOST", DEFAULT_SOCKET)
    return env


def docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", *args], env=docker_env(), capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def engine() -> dict[str, str]:
    try:
        answer = docker("version", "--format", "{{.Server.Version}}", timeout=30)
        ok = answer.returncode == 0
    except (OSError, subprocess.TimeoutExpired) as exc:
        ok, answer = False, exc  # type: ignore[assignment]
    if not ok:
        reason = f"no Docker engine at {docker_env()['DOCKER_HOST']} (scripts/docker-session.sh starts one)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    env = docker_env()
    if "DIABETES_BASE_IMAGE" not in env and docker("image", "inspect", STANDIN).returncode == 0:
        env["DIABETES_BASE_IMAGE"] = STANDIN
    return env


@dataclass
class Deployed:
    url: str
    image: str
    spec: Path
    env: dict[str, str]
    deploy_seconds: float


@pytest.fixture(scope="module")
def deployed(engine: dict[str, str], embedded_store, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    spec = tmp_path_factory.mktemp("spec") / "deployment.yaml"
    spec.write_text(
        f"name: {NAME}\n"
        "model: {name: diabetes_model, alias: champion, framework: ScikitLearn}\n"
        "resources: {cpu_cores: 1, memory_gb: 1}\n"
        "scale: {replicas: 1}\n"
        "auth: {enabled: true}\n"
        "scoring_timeout_seconds: 12\n"
        "max_concurrent_requests: 5\n"
        "probes: {pre_stop_seconds: 2, termination_grace_period_seconds: 40}\n"
    )
    env = {**engine, **embedded_store.env, "DIABETES_API_KEYS": KEYS}
    port = free_port()
    image = f"{NAME}:test"
    started = time.monotonic()
    proc = subprocess.run(
        [DIABETES, "deploy", "local", "--spec", str(spec), "--port", str(port), "--image", image],
        env=env,
        capture_output=True,
        text=True,
        timeout=560,  # under pytest-timeout's 600 s, so a slow build fails with its reason
        check=False,
    )
    took = time.monotonic() - started
    try:
        assert proc.returncode == 0, proc.stderr
        yield Deployed(proc.stdout.strip().splitlines()[-1], image, spec, env, took)
    finally:
        docker("rm", "--force", NAME)


def test_deploy_prints_the_scoring_uri_and_keeps_keys_off_command_lines(deployed: Deployed) -> None:
    assert deployed.url.startswith("http://127.0.0.1:")
    assert deployed.url.endswith("/score")
    inspect = json.loads(docker("inspect", NAME).stdout)[0]
    assert KEYS.split(",")[0] not in json.dumps(inspect["Args"]) + json.dumps(inspect["Config"]["Cmd"])
    print(f"\ndeploy local (build + run + ready) took {deployed.deploy_seconds:.0f}s")


def test_image_is_small_non_root_with_a_readiness_healthcheck(deployed: Deployed) -> None:
    image = json.loads(docker("image", "inspect", deployed.image).stdout)[0]
    size = image["Size"]
    print(f"\nimage {deployed.image}: {size / 1e6:.1f} MB")
    assert size <= MAX_IMAGE_BYTES
    config = image["Config"]
    assert config["User"] == "10001:10001"
    assert "/health/ready" in " ".join(config["Healthcheck"]["Test"])
    # A shell seeds /tmp with the baked byte-code, then `exec`s the server (PID 1, below).
    assert config["Cmd"][-1].endswith(
        "exec /opt/venv/bin/diabetes serve --model-uri /opt/model --host 0.0.0.0 --port 8080"
    )
    assert not any(v.startswith("DIABETES_API_KEYS") for v in config["Env"])


def test_the_server_is_pid_1_and_starts_from_the_baked_prepared_model(deployed: Deployed) -> None:
    pid1 = docker("exec", NAME, "cat", "/proc/1/cmdline").stdout.split("\0")
    assert pid1[1:3] == ["/opt/venv/bin/diabetes", "serve"]  # the shell exec'd it: SIGTERM reaches it
    logs = docker("logs", NAME)
    assert "from the prepared-model cache (artifact sha256 " in logs.stdout + logs.stderr
    # No process in the container loaded scikit-learn, SciPy or pandas (their compiled modules
    # would be mapped); the workers serve the compiled Ridge with numpy alone.
    maps = docker("exec", NAME, "sh", "-c", "cat /proc/[0-9]*/maps")
    assert maps.returncode == 0
    assert "site-packages/numpy/" in maps.stdout  # the workers' maps were read
    for package in ("sklearn", "scipy", "pandas"):
        assert f"site-packages/{package}/" not in maps.stdout


def test_container_runs_with_the_specs_resources(deployed: Deployed) -> None:
    host = json.loads(docker("inspect", NAME).stdout)[0]["HostConfig"]
    assert host["NanoCpus"] == 1_000_000_000
    assert host["Memory"] == 1024 * 1024 * 1024
    assert host["ReadonlyRootfs"] is True


def test_scores_the_example_rows(deployed: Deployed, example_data) -> None:
    headers = {"Authorization": f"Bearer {KEYS.split(',')[1]}"}
    answer = requests.post(deployed.url, json={"data": example_data.x_test[:2]}, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == pytest.approx([235.112, 246.799], abs=1e-3)
    assert answer.headers["x-model-name"] == "diabetes_model"
    assert answer.headers["x-model-version"] == "1"


def test_keys_are_required(deployed: Deployed, example_data) -> None:
    body = {"data": example_data.x_test[:1]}
    missing = requests.post(deployed.url, json=body, timeout=30)
    assert missing.status_code == 401
    wrong = requests.post(deployed.url, json=body, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401
    assert "nope" not in wrong.text
    # The probes stay open for the orchestrator.
    base = deployed.url.removesuffix("/score")
    assert requests.get(f"{base}/health/ready", timeout=10).status_code == 200
    assert requests.get(f"{base}/", timeout=10).text.strip().strip('"') == "Healthy"


def test_the_image_pins_its_models_artifact(deployed: Deployed) -> None:
    env = json.loads(docker("inspect", "--format", "{{json .Config.Env}}", deployed.image).stdout)
    pin = next(item.split("=", 1)[1] for item in env if item.startswith("DIABETES_MODEL_SHA256="))
    assert len(pin) == 64
    # /metrics is on the container's own metrics port (8082, EXPOSEd, not published), with no key.
    url = "http://127.0.0.1:8082/metrics"
    scrape = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    metrics = docker("exec", NAME, "/opt/venv/bin/python3", "-c", scrape)
    assert metrics.returncode == 0, metrics.stderr
    assert f'sha256="{pin}"' in metrics.stdout
    headers = {"Authorization": f"Bearer {KEYS.split(',')[0]}"}
    assert requests.get(deployed.url.removesuffix("/score") + "/metrics", headers=headers, timeout=5).status_code == 404
    exposed = json.loads(docker("inspect", "--format", "{{json .Config.ExposedPorts}}", deployed.image).stdout)
    assert "8082/tcp" in exposed


def test_the_specs_settings_reach_the_containers_workers(deployed: Deployed) -> None:
    title = requests.get(deployed.url.removesuffix("/score") + "/swagger.json", timeout=5).json()["info"]["title"]
    assert title == NAME
    logs = docker("logs", NAME).stderr
    settings_line = settings_summary(logs)
    for expected in (f"service_name={NAME}", "scoring_timeout_seconds=12.0", "max_concurrent_requests=5", "workers=1"):
        assert expected in settings_line.split(), settings_line


def test_docker_healthcheck_turns_healthy(deployed: Deployed) -> None:
    deadline = time.monotonic() + 90
    status = None
    while time.monotonic() < deadline:
        status = docker("inspect", "--format", "{{.State.Health.Status}}", NAME).stdout.strip()
        if status == "healthy":
            break
        time.sleep(1)
    # Where the container went, if it did: the engine's list and the container's last lines.
    assert status == "healthy", docker("ps", "--all").stdout + docker("logs", "--tail", "30", NAME).stderr


def test_stops_cleanly_within_the_grace_period(deployed: Deployed) -> None:
    grace = 40
    started = time.monotonic()
    stopped = docker("stop", "--time", str(grace), NAME, timeout=grace + 30)
    took = time.monotonic() - started
    assert stopped.returncode == 0, stopped.stderr
    print(f"\ndocker stop took {took:.1f}s")
    assert took < grace  # SIGTERM reached the server, which drained and exited by itself
    state = json.loads(docker("inspect", NAME).stdout)[0]["State"]
    assert state["ExitCode"] == 0
    assert not state["OOMKilled"]  # exit 0 well inside the grace period: not killed, drained


def test_down_removes_the_container(deployed: Deployed) -> None:
    def down() -> subprocess.CompletedProcess:
        return subprocess.run(
            [DIABETES, "deploy", "local", "--spec", str(deployed.spec), "--down"],
            env=deployed.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    proc = down()
    assert proc.returncode == 0, proc.stderr
    assert docker("inspect", NAME).returncode != 0
    again = down()  # a second --down finds nothing to remove and says so
    assert again.returncode == 0
    assert "no container" in again.stdout


def test_a_model_mounted_at_run_time(deployed: Deployed, example_model_pkl: Path, example_data, tmp_path: Path) -> None:
    # The same image serves a model mounted over /opt/model (the classic example's bare model.pkl).
    mounted = tmp_path / "model"
    mounted.mkdir()
    (mounted / "model.pkl").write_bytes(example_model_pkl.read_bytes())
    mounted.chmod(0o755)  # the container's non-root user reads it
    (mounted / "model.pkl").chmod(0o644)
    port = free_port()
    name = f"{NAME}-mounted"
    run = docker(
        "run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8080",
        "--volume", f"{mounted}:/opt/model:ro", "--read-only", "--tmpfs", "/tmp",
        "--env", f"DIABETES_API_KEYS={KEYS}",
        # The image pins its baked model's digest: a pickle mounted in its place is pinned anew.
        "--env", f"DIABETES_MODEL_SHA256={hashlib.sha256(example_model_pkl.read_bytes()).hexdigest()}",
        deployed.image,
    )  # fmt: skip
    try:
        assert run.returncode == 0, run.stderr
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/health/ready", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.5)
        headers = {"Authorization": f"Bearer {KEYS.split(',')[0]}"}
        answer = requests.post(f"{url}/score", json={"data": example_data.x_test[:2]}, headers=headers, timeout=30)
        assert answer.status_code == 200, docker("logs", name).stderr[-500:]
        assert answer.json() == pytest.approx([235.112, 246.799], abs=1e-3)
    finally:
        docker("rm", "--force", name)


def settings_summary(output: str) -> str:
    """The start-up `settings:` summary, wrapped to the screen's width (continuation lines indented)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("settings: "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return " ".join(lines[start:end])
