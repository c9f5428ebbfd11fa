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
