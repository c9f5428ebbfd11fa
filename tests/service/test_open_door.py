"""No open door by accident: off loopback, `serve` needs keys or says `--no-auth` out loud (issue 27)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests
from pydantic import ValidationError

from diabetes_deploy.docker import run_args
from diabetes_deploy.spec import SpecError, load_spec, parse_spec, serving_environment
from diabetes_service.settings import ServiceSettings
from tests.service.test_settings_flow import settings_summary
from tests.support.processes import DIABETES, REPO, free_port

SPEC = REPO / "service" / "deployment.yaml"


def serve(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIABETES_") or k == "DIABETES_GRPC_PORT"}
    return subprocess.run(
        [DIABETES, "serve", "--port", str(free_port()), *args],
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "scoring.example.com", ""])
def test_an_address_off_loopback_needs_keys_or_no_auth(host: str, monkeypatch) -> None:
    monkeypatch.delenv("DIABETES_API_KEYS", raising=False)
    monkeypatch.delenv("DIABETES_NO_AUTH", raising=False)
    with pytest.raises(ValidationError, match="--no-auth"):
        ServiceSettings(host=host)
    assert ServiceSettings(host=host, no_auth=True).auth_enabled is False
    assert ServiceSettings(host=host, api_keys="k1,k2").auth_enabled is True
    monkeypatch.setenv("DIABETES_NO_AUTH", "1")
    assert ServiceSettings(host=host).no_auth is True


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_keeps_serving_without_keys(host: str, monkeypatch) -> None:
    monkeypatch.delenv("DIABETES_API_KEYS", raising=False)
    assert ServiceSettings(host=host).auth_enabled is False


def test_serve_on_every_interface_without_keys_is_refused_naming_the_flag() -> None:
    done = serve("--host", "0.0.0.0", "--model-uri", "/nowhere")
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "diabetes serve: serving on 0.0.0.0 without API keys: set DIABETES_API_KEYS='primary,secondary', "
        "or pass --no-auth (DIABETES_NO_AUTH=1, the spec's auth: none) to serve without keys"
    )
    # The same settings from the environment are refused the same way.
    by_env = serve("--model-uri", "/nowhere", env={"DIABETES_HOST": "::"})
    assert by_env.returncode == 1
    assert "--no-auth" in by_env.stderr


def test_the_containers_command_fails_the_same_way_when_keys_are_missing() -> None:
    """The image's CMD (docker/Dockerfile) with the spec it bakes in (auth on) and no key."""
    done = serve("--model-uri", "/opt/model", "--host", "0.0.0.0", env={"DIABETES_SPEC": str(SPEC)})
    assert done.returncode == 1
    assert "auth is enabled but DIABETES_API_KEYS holds no key" in done.stderr


def test_no_auth_serves_on_every_interface(service, example_model_pkl: Path, example_data) -> None:
    svc = service(str(example_model_pkl), args=["--host", "0.0.0.0", "--no-auth"]).start()
    answer = requests.post(svc.url + "/score", json={"data": example_data.x_test[:2]}, timeout=10)
    assert answer.status_code == 200
    assert len(answer.json()) == 2
    summary = settings_summary(svc.output()).split()
    assert "host=0.0.0.0" in summary
    assert "no_auth=True" in summary


def spec_with(auth: str) -> dict:
    import yaml

    data = yaml.safe_load(SPEC.read_text())
    data["auth"] = yaml.safe_load(auth)
    return data


def test_the_specs_auth_none_serves_without_keys_on_purpose() -> None:
    spec = parse_spec(spec_with("none"))
    assert spec.auth.enabled is False
    env = serving_environment(spec)
    assert env["DIABETES_NO_AUTH"] == "True"
    assert "DIABETES_API_KEYS" not in env
    # What the container sees: the settings validate on every interface, with no key.
    values = {name.removeprefix("DIABETES_").lower(): value for name, value in env.items()}
    assert ServiceSettings(**values, host="0.0.0.0").no_auth is True
    # `deploy local` runs it with no key, and the spec's old form says the same.
    args = run_args(spec, "img", port=9000)
    assert "DIABETES_API_KEYS" not in args
    assert "DIABETES_NO_AUTH=True" in args
    assert parse_spec(spec_with("{enabled: false}")).auth == spec.auth


def test_the_specs_auth_on_passes_the_keys_by_name_only() -> None:
    spec = load_spec(SPEC)
    assert "DIABETES_NO_AUTH" not in serving_environment(spec)
    args = run_args(spec, "img", port=9000)
    assert args[args.index("DIABETES_API_KEYS") - 1] == "--env"


@pytest.mark.parametrize("auth", ["sometimes", "true", "{enabled: maybe}"])
def test_a_bad_auth_is_refused_naming_the_field(auth: str) -> None:
    with pytest.raises(SpecError, match=r"^spec: auth"):
        parse_spec(spec_with(auth))
