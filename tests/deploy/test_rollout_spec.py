"""The spec's `rollout` section reaches the pods: `diabetes deploy kubernetes` writes it into the
container's DIABETES_* variables, which the service reads as `diabetes serve --challenger ...` flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from diabetes_deploy.spec import SpecError, parse_spec
from tests.deploy.test_kubernetes import deploy_kubernetes, load_dir

SPEC = """name: canary-service
model: {name: diabetes_model, alias: champion, follow: true, tracking_uri: "http://mlflow:5000"}
rollout:
  challenger_alias: challenger
  mode: canary
  canary_percent: 30
  rollback_alias: true
  promote_after: 30m
  guard_p99_ms: 50
"""


def test_the_rollout_section_reaches_the_pods_environment(tmp_path: Path) -> None:
    spec = tmp_path / "canary.yaml"
    spec.write_text(SPEC)
    proc = deploy_kubernetes(tmp_path / "out", spec=spec, keys="a-key")
    assert proc.returncode == 0, proc.stderr
    pod = load_dir(tmp_path / "out")["deployment.yaml"]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["DIABETES_CHALLENGER"] == "models:/diabetes_model@challenger"
    assert env["DIABETES_ROLLOUT"] == "canary"
    assert env["DIABETES_CANARY_PERCENT"] == "30"
    assert env["DIABETES_ROLLBACK_ALIAS"] == "True"
    assert env["DIABETES_PROMOTE_AFTER"] == "30m"
    assert env["DIABETES_GUARD_P99_MS"] == "50"
    # What the pod's environment says is what the service runs with (the image carries the model URI).
    from diabetes_service.settings import ServiceSettings

    given = {k.removeprefix("DIABETES_").lower(): v for k, v in env.items() if v is not None}
    settings = ServiceSettings(**{**given, "model_uri": "models:/diabetes_model@champion"})
    assert (settings.challenger, settings.rollout, settings.canary_percent) == (
        "models:/diabetes_model@challenger",
        "canary",
        30.0,
    )
    assert settings.rollback_alias
    assert settings.promote_after_seconds == 1800
    assert settings.guard_p99_ms == 50


@pytest.mark.parametrize(
    ("rollout", "words"),
    [
        ("{mode: canary}", "exactly one of challenger_alias and challenger_version"),
        ("{challenger_version: 2, mode: blue}", "rollout.mode: must be 'shadow' or 'canary'"),
        ("{challenger_version: 2, mode: canary, rollback_alias: true}", "rollback_alias needs a challenger_alias"),
        ("{challenger_alias: c, mode: canary, canary_percent: 130}", "rollout.canary_percent"),
    ],
)
def test_a_wrong_rollout_section_names_its_field(rollout: str, words: str) -> None:
    import yaml

    data = yaml.safe_load(f"name: s-1\nmodel: {{name: m, version: 1}}\nrollout: {rollout}\n")
    with pytest.raises(SpecError, match=words.replace("'", ".")):
        parse_spec(data)


def test_promotion_needs_the_model_by_alias() -> None:
    import yaml

    data = yaml.safe_load(
        "name: s-1\nmodel: {name: m, version: 1}\nrollout: {challenger_version: 2, mode: shadow, promote_after: 1h}\n"
    )
    with pytest.raises(SpecError, match="promote_after moves the model's alias"):
        parse_spec(data)
