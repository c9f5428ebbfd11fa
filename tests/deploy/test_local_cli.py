"""`diabetes deploy local` refuses bad input before any build starts: one line, non-zero exit."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from diabetes_deploy.docker import START_ENGINE
from tests.support.processes import DIABETES, REPO, free_port

SPEC = REPO / "service" / "deployment.yaml"


def deploy_local(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k != "DIABETES_API_KEYS"}
    return subprocess.run(
        [DIABETES, "deploy", "local", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_auth_enabled_needs_keys() -> None:
    proc = deploy_local("--spec", str(SPEC))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"diabetes deploy: {SPEC}: auth is enabled: set DIABETES_API_KEYS='primary,secondary'"
    )
    blank = deploy_local("--spec", str(SPEC), env={"DIABETES_API_KEYS": " , "})
    assert blank.returncode == 1
    assert "auth is enabled" in blank.stderr


def test_bad_port() -> None:
    proc = deploy_local("--spec", str(SPEC), "--port", "70000", env={"DIABETES_API_KEYS": "a,b"})
    assert proc.returncode == 1
    assert proc.stderr.strip() == "diabetes deploy: --port 70000: must be 1-65535"


def test_missing_spec(tmp_path: Path) -> None:
    proc = deploy_local("--spec", str(tmp_path / "none.yaml"))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"diabetes deploy: {tmp_path / 'none.yaml'}: no such file"


@pytest.mark.docker  # the daemon is asked first: only with one does the model come next
def test_unknown_local_model_is_refused_before_building(tmp_path: Path) -> None:
    proc = deploy_local(
        "--spec", str(SPEC), "--model-uri", str(tmp_path / "nowhere"), "--no-wheels", "--port", str(free_port()),
        "--grpc-port", "0", env={"DIABETES_API_KEYS": "a,b"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "no such file or folder, and not a models:/ or runs:/ URI" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_lists_every_target() -> None:
    proc = subprocess.run([DIABETES, "deploy", "--help"], capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0
    for target in ("local", "kubernetes", "azureml"):
        assert target in proc.stdout


def test_docker_run_publishes_the_specs_grpc_port_and_sets_it() -> None:
    """Up to the docker call (the container itself is tests/deploy/test_docker.py's, with the engine)."""
    from diabetes_deploy.docker import run_args
    from diabetes_deploy.spec import load_spec

    spec = load_spec(SPEC)
    args = run_args(spec, "img", port=9000, grpc_port=9001)
    published = [args[i + 1] for i, arg in enumerate(args) if arg == "--publish"]
    assert published == ["127.0.0.1:9000:8080", "127.0.0.1:9001:8081"]
    assert "DIABETES_GRPC_PORT=8081" in args
    assert [a for a in run_args(spec, "img", port=9000, grpc_port=0) if a.startswith("127.0.0.1:")] == [
        "127.0.0.1:9000:8080"
    ]
    off = spec.model_copy(update={"grpc_port": 0})
    assert "DIABETES_GRPC_PORT=0" in run_args(off, "img", port=9000, grpc_port=9001)
    assert sum(a == "--publish" for a in run_args(off, "img", port=9000, grpc_port=9001)) == 1


def test_deploy_local_refuses_a_bad_grpc_port() -> None:
    proc = deploy_local("--spec", str(SPEC), "--grpc-port", "70000", env={"DIABETES_API_KEYS": "a,b"})
    assert proc.returncode != 0
    assert "--grpc-port 70000: must be 0-65535" in proc.stderr


def no_daemon(tmp_path: Path) -> dict[str, str]:
    """The environment of a machine whose Docker daemon is not running: its socket answers nothing."""
    return {"DIABETES_API_KEYS": "a,b", "DOCKER_HOST": f"unix://{tmp_path / 'docker.sock'}"}


def test_no_daemon_is_said_first_with_the_command_that_starts_one(tmp_path: Path) -> None:
    started = time.monotonic()
    proc = deploy_local("--spec", str(SPEC), "--port", str(free_port()), "--grpc-port", "0", env=no_daemon(tmp_path))
    assert time.monotonic() - started < 30  # no model resolved, no wheels downloaded (12 s before)
    assert proc.returncode == 1
    assert proc.stderr.startswith("diabetes deploy: no Docker daemon answers (")
    assert proc.stderr.strip().endswith(f"start one with `{START_ENGINE}` (README)")
    assert proc.stderr.count("\n") == 1
    assert START_ENGINE in (REPO / "README.md").read_text()  # the command it names is the README's


def test_down_fails_when_it_cannot_reach_the_daemon(tmp_path: Path) -> None:
    proc = deploy_local("--spec", str(SPEC), "--down", env=no_daemon(tmp_path))
    assert proc.returncode == 1
    assert "no Docker daemon answers" in proc.stderr
    assert "no container named" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("flag", ["--port", "--grpc-port"])
def test_a_taken_host_port_is_a_clear_error_before_the_build(tmp_path: Path, flag: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        ports = {"--port": str(free_port()), "--grpc-port": str(free_port()), flag: str(taken)}
        args = [arg for pair in ports.items() for arg in pair]
        proc = deploy_local("--spec", str(SPEC), *args, env=no_daemon(tmp_path))
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"diabetes deploy: port {taken} on 127.0.0.1 is taken (is `make run` still serving there? Ctrl+C stops "
        f"it); stop what listens there, or choose another host port with {flag}"
    )


def test_a_spec_logging_payloads_gets_pyarrow_in_the_image_and_a_writable_folder(tmp_path: Path) -> None:
    """The build inputs (building the image itself is tests/deploy/test_docker.py's, with the engine):
    pyarrow is downloaded and installed only when the spec turns payload logging on."""
    from diabetes_deploy.docker import BuildContext, build_args, image_extras, run_args, service_requirements
    from diabetes_deploy.spec import load_spec

    plain = load_spec(SPEC)
    spec_file = tmp_path / "deployment.yaml"
    spec_file.write_text(SPEC.read_text() + "payload_logging:\n  dir: /var/log/diabetes/payloads\n")
    logging = load_spec(spec_file)
    assert image_extras(plain) == ("service",)
    assert image_extras(logging) == ("service", "payloads")
    assert not any(req.startswith("pyarrow") for req in service_requirements(REPO, image_extras(plain)))
    assert any(req.startswith("pyarrow") for req in service_requirements(REPO, image_extras(logging)))
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "ARG EXTRAS=service" in dockerfile
    assert '"/src[${EXTRAS}]"' in dockerfile
    assert 'payloads = [\n    "pyarrow' in (REPO / "pyproject.toml").read_text()
    assert "/var/log/diabetes/payloads:rw,mode=1777,size=256m" in run_args(logging, "img", port=9000)
    assert not any(a.startswith("/var/log") for a in run_args(plain, "img", port=9000))
    # build_image hands the extras to the Dockerfile.
    context = BuildContext(tmp_path, "model", "deployment.yaml", 0, extras=",".join(image_extras(logging)))
    assert build_args(context)["EXTRAS"] == "service,payloads"
