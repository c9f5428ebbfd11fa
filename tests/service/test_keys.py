"""API keys: primary and secondary both work, probes and the API description stay open."""

from __future__ import annotations

import pytest
import requests

PRIMARY = "primary-key-for-tests-only"
SECONDARY = "secondary-key-for-tests-only"


@pytest.fixture(scope="module")
def keyed(example_model_pkl, tmp_path_factory):
    from tests.support.service import ServiceProcess

    env = {"DIABETES_API_KEYS": f"{PRIMARY},{SECONDARY}"}
    with ServiceProcess(str(example_model_pkl), env=env, log=tmp_path_factory.mktemp("log") / "s.log") as svc:
        yield svc


def score(svc, example_data, authorization: str | None):
    headers = {"Authorization": authorization} if authorization else {}
    return requests.post(svc.url + "/score", json={"data": example_data.x_test[:1]}, headers=headers, timeout=5)


def test_either_key_is_accepted(keyed, example_data):
    assert score(keyed, example_data, f"Bearer {PRIMARY}").status_code == 200
    assert score(keyed, example_data, f"Bearer {SECONDARY}").status_code == 200
    assert score(keyed, example_data, f"bearer {SECONDARY}").status_code == 200


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer wrong", f"Bearer {PRIMARY}x", f"Basic {PRIMARY}", PRIMARY, "Bearer ", f"Bearer {PRIMARY[:-1]}"],
)
def test_missing_or_wrong_key_is_401_without_echo(keyed, example_data, authorization):
    answer = score(keyed, example_data, authorization)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "API key" in answer.json()["message"]
    assert PRIMARY not in answer.text
    assert SECONDARY not in answer.text


@pytest.mark.parametrize("authorization", [PRIMARY, f"Basic {PRIMARY}", "wrong-key"])
def test_a_key_without_the_bearer_scheme_gets_a_hint(keyed, example_data, authorization):
    answer = score(keyed, example_data, authorization)
    assert answer.status_code == 401
    assert answer.json()["message"] == (
        "invalid API key: did you mean 'Authorization: Bearer <key>'? (the Bearer scheme is missing)"
    )


def test_a_wrong_bearer_key_gets_no_hint(keyed, example_data):
    assert score(keyed, example_data, "Bearer wrong").json()["message"] == "invalid API key"


def test_probes_and_api_description_are_open(keyed):
    for path in ("/", "/health/ready", "/swagger.json", "/docs", "/docs/swagger-ui-bundle.js"):
        assert requests.get(keyed.url + path, timeout=5).status_code == 200, path


def test_metrics_need_a_key(keyed):
    assert requests.get(keyed.url + "/metrics", timeout=5).status_code == 401
    authorized = requests.get(keyed.url + "/metrics", headers={"Authorization": f"Bearer {PRIMARY}"}, timeout=5)
    assert authorized.status_code == 200


def test_swagger_declares_the_bearer_scheme(keyed):
    document = requests.get(keyed.url + "/swagger.json", timeout=5).json()
    assert document["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    assert document["paths"]["/score"]["post"]["security"] == [{"bearerAuth": []}]


def test_keys_never_reach_the_log(keyed, example_data):
    score(keyed, example_data, f"Bearer {PRIMARY}")
    score(keyed, example_data, "Bearer wrong-key-attempt")
    log = keyed.output()
    assert PRIMARY not in log
    assert SECONDARY not in log
    assert "wrong-key-attempt" not in log


def test_private_docs_setting_closes_the_description(service, example_model_pkl):
    env = {"DIABETES_API_KEYS": PRIMARY, "DIABETES_PRIVATE_DOCS": "true"}
    with service(str(example_model_pkl), env=env) as svc:
        for path in ("/swagger.json", "/docs", "/docs/swagger-ui.css"):
            assert requests.get(svc.url + path, timeout=5).status_code == 401, path
        assert requests.get(svc.url + "/health/ready", timeout=5).status_code == 200


def test_no_keys_is_said_at_start_up(service, example_model_pkl, example_data):
    with service(str(example_model_pkl)) as svc:
        assert score(svc, example_data, None).status_code == 200
        assert "no API keys configured" in svc.output()
