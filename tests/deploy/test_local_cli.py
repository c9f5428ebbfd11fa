"""`diabetes deploy local` refuses bad input before any build starts: one line, non-zero exit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.processes import DIABETES, REPO

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


def test_unknown_local_model_is_refused_before_building(tmp_path: Path) -> None:
    proc = deploy_local(
        "--spec", str(SPEC), "--model-uri", str(tmp_path / "nowhere"), "--no-wheels", env={"DIABETES_API_KEYS": "a,b"}
    )
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
