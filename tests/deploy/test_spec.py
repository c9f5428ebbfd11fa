"""The deployment spec: the shipped file, the worked example, and one clear message per mistake."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from diabetes_deploy.spec import DeploymentSpec, SpecError, load_spec, parse_spec
from tests.support.processes import REPO

SHIPPED = REPO / "service" / "deployment.yaml"


def example(**changes: object) -> dict:
    data: dict = {
        "name": "diabetes-service",
        "model": {"name": "diabetes_model", "version": 1, "framework": "ScikitLearn"},
        "resources": {"cpu_cores": 1, "memory_gb": 1},
        "scale": {"replicas": 1},
        "auth": {"enabled": True},
    }
    data.update(changes)
    return data


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_shipped_spec_is_the_worked_example() -> None:
    spec = load_spec(SHIPPED)
    assert spec.name == "diabetes-service"
    assert spec.model.name == "diabetes_model"
    assert spec.model.framework == "ScikitLearn"
    assert (spec.model.alias, spec.model.version) == ("champion", None)
    assert spec.model_uri == "models:/diabetes_model@champion"
    assert (spec.resources.cpu_cores, spec.resources.memory_gb) == (1.0, 1.0)
    assert spec.auth.enabled is True
    assert spec.scale.autoscale_enabled


def test_version_gives_a_version_uri(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, example()))
    assert spec.model_uri == "models:/diabetes_model/1"
    assert spec.model.version == 1
    assert spec.scale.replicas == 1
    assert not spec.scale.autoscale_enabled
    assert isinstance(spec.scoring_timeout_seconds, float)


def test_defaults_fill_what_is_left_out() -> None:
    spec = parse_spec({"name": "abc", "model": {"name": "m", "alias": "prod"}})
    assert (spec.resources.cpu_cores, spec.resources.memory_gb, spec.resources.limits) == (1.0, 1.0, None)
    assert spec.scale.replicas == 1
    assert spec.auth.enabled is True
    assert spec.probes.termination_grace_period_seconds > spec.probes.pre_stop_seconds
    assert spec.model.framework == "ScikitLearn"


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("abc", True),
        ("a" * 32, True),
        ("diabetes-service-2", True),
        ("ab", False),
        ("a" * 33, False),
        ("Diabetes", False),
        ("1service", False),
        ("-service", False),
        ("service-", False),
        ("my_service", False),
        ("my.service", False),
    ],
)
def test_name_follows_azures_rule(name: str, ok: bool) -> None:
    if ok:
        assert parse_spec(example(name=name)).name == name
    else:
        with pytest.raises(SpecError) as err:
            parse_spec(example(name=name), "service/deployment.yaml")
        assert str(err.value).startswith("service/deployment.yaml: name: must be 3-32 characters")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"model": {"name": "diabetes_model"}}, "model: give exactly one of version or alias"),
        ({"model": {"name": "m", "version": 1, "alias": "a"}}, "model: give exactly one of version or alias"),
        ({"model": {"name": "m", "version": 0}}, "model.version: Input should be greater than or equal to 1"),
        ({"model": {"name": "m", "version": "1"}}, "model.version: Input should be a valid integer"),
        ({"model": {"name": "m", "alias": "latest"}}, "model.alias: 'latest' and 'v<number>' are reserved"),
        ({"model": {"name": "a/b", "version": 1}}, "model.name: must be a registered model name"),
        ({"model": {"name": "m", "version": 1, "framework": "TensorFlow"}}, "model.framework: must be 'ScikitLearn'"),
        ({"model": {"version": 1}}, "model.name: is required"),
        ({"resources": {"cpu_cores": 0}}, "resources.cpu_cores: Input should be greater than 0"),
        ({"resources": {"cpu_cores": "1"}}, "resources.cpu_cores: Input should be a valid number"),
        ({"resources": {"memory_gb": 2, "limits": {"cpu_cores": 1, "memory_gb": 1}}}, "limits.memory_gb must be"),
        ({"resources": {"cpus": 1}}, "resources.cpus: unknown field"),
        ({"scale": {"replicas": 2, "autoscale": {}}}, "scale: give either replicas or autoscale, not both"),
        ({"scale": {"autoscale": {"min_replicas": 4, "max_replicas": 2}}}, "min_replicas must not exceed"),
        ({"scale": {"autoscale": {"target_utilization": 120}}}, "target_utilization: Input should be less"),
        ({"auth": {"enabled": "yes"}}, "auth.enabled: Input should be a valid boolean"),
        ({"auth": {"enabled": True, "primary_key": "abc"}}, "primary_key: keys never go in the spec"),
        ({"scoring_timeout_seconds": -1}, "scoring_timeout_seconds: Input should be greater than 0"),
        ({"max_concurrent_requests": 0}, "max_concurrent_requests: Input should be greater than or equal to 1"),
        ({"probes": {"pre_stop_seconds": 50, "termination_grace_period_seconds": 40}}, "longer than pre_stop"),
        ({"scoring_timeout_seconds": 100}, "termination_grace_period_seconds must cover"),
        ({"probes": {"liveness": {"success_threshold": 2}}}, "probes.liveness: success_threshold must be 1"),
        ({"replicas": 3}, "replicas: unknown field"),
    ],
)
def test_one_clear_message_naming_the_field(tmp_path: Path, changes: dict, expected: str) -> None:
    path = write(tmp_path, example(**changes))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    message = str(err.value)
    assert message.startswith(f"{path}: "), message
    assert expected in message, message
    assert "\n" not in message


def test_key_values_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, example(auth={"enabled": True, "keys": ["s3cr3t-value"]}))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert "s3cr3t-value" not in str(err.value)
    assert "DIABETES_API_KEYS" in str(err.value)


def test_several_problems_are_counted() -> None:
    with pytest.raises(SpecError) as err:
        parse_spec({"name": "X", "model": {"name": "m", "version": 1}, "max_concurrent_requests": 0})
    assert "(and 1 more problem)" in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"nowhere\.yaml: no such file"):
        load_spec(tmp_path / "nowhere.yaml")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="is a folder"):
        load_spec(tmp_path)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: diabetes-service\nmodel: [unclosed\n")
    with pytest.raises(SpecError, match=r"not valid YAML at line \d+, column \d+"):
        load_spec(path)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_not_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(SpecError, match="must be a mapping of fields"):
        load_spec(write(tmp_path, text))


def test_spec_is_immutable() -> None:
    spec = parse_spec(example())
    with pytest.raises(ValueError, match="frozen"):
        spec.name = "other"  # type: ignore[misc]
    assert isinstance(spec, DeploymentSpec)


def test_payload_logging_reaches_serve_and_the_container_environment() -> None:
    from diabetes_deploy.spec import serving_environment, serving_settings
    from diabetes_service.settings import ServiceSettings

    data = {
        "name": "payloads",
        "model": {"name": "m", "version": 1},
        "auth": "none",
        "payload_logging": {"dir": "/var/log/p", "sample_rate": 1, "redact": {"sex": "drop", "age": "hash"}},
    }
    spec = parse_spec(data)
    settings = serving_settings(spec)
    assert (settings["log_payloads"], settings["log_sample_rate"]) == ("/var/log/p", 1.0)
    environment = serving_environment(spec)
    assert environment["DIABETES_LOG_REDACT"] == "sex=drop,age=hash"
    assert environment["DIABETES_LOG_SAMPLE_RATE"] == "1"
    # What a container's worker builds from those variables.
    served = ServiceSettings(**{k: settings[k] for k in ("log_payloads", "log_sample_rate", "log_redact")})
    assert served.log_redact == {"sex": "drop", "age": "hash"}
    for field, bad, words in (
        ("redact", {"sex": "blur"}, "payload_logging.redact.sex: must be 'drop' or 'hash'"),
        ("sample_rate", 1.5, "payload_logging.sample_rate: Input should be less than or equal to 1"),
    ):
        with pytest.raises(SpecError) as caught:
            parse_spec({**data, "payload_logging": {**data["payload_logging"], field: bad}})
        assert words in str(caught.value)
