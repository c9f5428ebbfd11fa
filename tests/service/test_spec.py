"""`diabetes serve --spec`: the no-code deployment spec drives the service; bad keys never serve."""

from __future__ import annotations

import os
import subprocess

import requests

from tests.support.processes import DIABETES, REPO, free_port

SPEC = str(REPO / "service" / "deployment.yaml")


def serve(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k != "DIABETES_API_KEYS"}
    return subprocess.run(
        [DIABETES, "serve", "--port", str(free_port()), *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_spec_with_auth_but_no_keys_refuses_to_start(example_model_pkl):
    done = serve("--spec", SPEC, "--model-uri", str(example_model_pkl), env={})
    assert done.returncode != 0
    assert done.stderr.strip().endswith("auth is enabled but DIABETES_API_KEYS holds no key")


def test_placeholder_keys_from_the_generated_secret_are_refused(example_model_pkl):
    env = {"DIABETES_API_KEYS": "REPLACE-ME-primary-key,REPLACE-ME-secondary-key"}
    done = serve("--model-uri", str(example_model_pkl), env=env)
    assert done.returncode != 0
    assert "placeholder key" in done.stderr
    assert "REPLACE-ME-primary-key" not in done.stderr


def test_spec_names_the_service_and_flags_override_its_model(service, example_model_pkl, example_data):
    env = {"DIABETES_API_KEYS": "spec-test-key"}
    with service(str(example_model_pkl), env=env, args=["--spec", SPEC]) as svc:
        document = requests.get(svc.url + "/swagger.json", timeout=5).json()
        assert document["info"]["title"] == "diabetes-service"
        answer = requests.post(
            svc.url + "/score",
            json={"data": example_data.x_test[:2]},
            headers={"Authorization": "Bearer spec-test-key"},
            timeout=5,
        )
        assert [round(v, 3) for v in answer.json()] == [235.112, 246.799]


def test_spec_limits_reach_the_service_settings(monkeypatch):
    import argparse

    from diabetes_cli.serve import build_settings
    from diabetes_deploy.spec import load_spec

    monkeypatch.setenv("DIABETES_API_KEYS", "spec-test-key")
    flags = ("model_uri", "host", "port", "workers", "tracking_uri")
    settings = build_settings(argparse.Namespace(spec=SPEC, **dict.fromkeys(flags)))
    spec = load_spec(SPEC)
    assert settings.scoring_timeout_seconds == spec.scoring_timeout_seconds
    assert settings.max_concurrent_requests == spec.max_concurrent_requests
    assert settings.service_name == spec.name
